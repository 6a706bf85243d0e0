package registry

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// ErrTooLarge is wrapped by errors for responses over a size cap.
var ErrTooLarge = errors.New("response too large")

// ErrTooMany is wrapped by errors for signature manifests and referrer
// lists with more descriptors than Options.MaxDescriptors.
var ErrTooMany = errors.New("too many descriptors")

// ErrDigestMismatch is wrapped when content fetched by digest does not hash
// to that digest.
var ErrDigestMismatch = errors.New("content does not match its digest")

// ErrTooManyRedirects is wrapped when a registry redirects a request more
// than maxRedirects times in a row.
var ErrTooManyRedirects = errors.New("too many redirects")

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

// maxRegistryText bounds what of a registry's own error text is kept.
const maxRegistryText = 256

// statusError is a registry's error answer, worded so that the HTTP status
// is always named and the registry's own text is bounded.
// go-containerregistry words it as the registry's JSON error ("TOOMANYREQUESTS:
// ...") without the status when there is one, else as up to 64 KiB of the
// body; either way registry-authored text, which ends up in every refusal
// message and audit line. It unwraps to the *transport.Error.
type statusError struct{ terr *transport.Error }

func (e *statusError) Error() string {
	text := e.terr.Error()
	prefix := ""
	if r := e.terr.Request; r != nil {
		prefix = r.Method + " " + redactURL(r) + ": "
		// transport.Error starts with the same method and (redacted) URL.
		if i := strings.Index(text, ": "); i >= 0 && strings.HasPrefix(text, r.Method+" ") {
			text = text[i+2:]
		}
	}
	status := fmt.Sprintf("HTTP %d %s", e.terr.StatusCode, http.StatusText(e.terr.StatusCode))
	text = strings.TrimPrefix(text, "unexpected status code "+strconv.Itoa(e.terr.StatusCode)+" "+http.StatusText(e.terr.StatusCode))
	text = strings.TrimPrefix(text, ": ")
	if text == "" {
		return prefix + status
	}
	return prefix + status + ": " + truncate(text, maxRegistryText)
}

func (e *statusError) Unwrap() error { return e.terr }

// describe rewords a registry's error answer in err (see statusError);
// other errors are returned as they are.
func describe(err error) error {
	var terr *transport.Error
	if err == nil || !errors.As(err, &terr) {
		return err
	}
	var already *statusError
	if errors.As(err, &already) {
		return err
	}
	return &statusError{terr: terr}
}

// truncate cuts s to at most n bytes on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + fmt.Sprintf("... (%d more bytes)", len(s)-cut)
}
