package registry

import (
	"errors"
	"net/http"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// ErrTooLarge is wrapped by errors for responses over a size cap.
var ErrTooLarge = errors.New("response too large")

// ErrDigestMismatch is wrapped when content fetched by digest does not hash
// to that digest.
var ErrDigestMismatch = errors.New("content does not match its digest")

// IsNotFound reports whether err is the registry's 404: the manifest, tag
// or blob is not there. That is an answer ("no signature"), unlike network
// errors, 5xx or timeouts, which say nothing about the image.
func IsNotFound(err error) bool {
	var terr *transport.Error
	return errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound
}

// DefinitiveError is an answer about the image, not a failure to get one:
// for example, the manifest chain from the top-level digest does not lead to
// the container's config. A validator turns it into a deny verdict; any
// other error from this package is transient.
type DefinitiveError struct {
	Reason string
	Err    error // optional cause
}

func (e *DefinitiveError) Error() string {
	if e.Err != nil {
		return e.Reason + ": " + e.Err.Error()
	}
	return e.Reason
}

func (e *DefinitiveError) Unwrap() error { return e.Err }

// IsDefinitive reports whether err is (or wraps) a DefinitiveError.
func IsDefinitive(err error) bool {
	var d *DefinitiveError
	return errors.As(err, &d)
}
