package notaryv1

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path"
	"regexp"

	store "github.com/theupdateframework/notary/storage"
	"github.com/theupdateframework/notary/tuf/data"
)

// remote is the notary server as one verification sees it: notary's
// storage.RemoteStore with every request bound to the verification's
// context, each file capped, and the whole verification held to a byte and
// request budget. notary's own HTTP store has no context and accepts up to
// 100 MiB per file.
//
// Errors are notary's storage error values, unwrapped, because notary's
// TUF client tells "not there" from "could not ask" by their types.
type remote struct {
	ctx context.Context
	srv *server
	gun string
	lim Options
	pin *pinning

	bytes int64
	nreq  int

	// fetched holds each role's last download in this verification, to
	// explain later why a delegation notary left out did not validate.
	fetched map[data.RoleName][]byte
	// timestampErr is set when the timestamp could not be fetched: notary
	// would then carry on with a cached one, and the gate wants fresh.
	timestampErr error
	// netErr is the first failure to get an answer from the server, and
	// refused whether that was an HTTP error status; overrun says what
	// went over a cap.
	netErr  error
	refused bool
	overrun string
}

var _ store.RemoteStore = (*remote)(nil)

func newRemote(ctx context.Context, srv *server, gun string, lim Options, pin *pinning) *remote {
	return &remote{ctx: ctx, srv: srv, gun: gun, lim: lim, pin: pin, fetched: map[data.RoleName][]byte{}}
}

// GetSized downloads metadata file name ("root", "2.root",
// "snapshot.<sha256>", "targets/releases.<sha256>", ...). size is what the
// caller expects at most (or NoSizeLimit); the cap applies either way.
func (r *remote) GetSized(name string, size int64) ([]byte, error) {
	b, err := r.get(name, size)
	if name == data.CanonicalTimestampRole.String() && err != nil {
		r.timestampErr = err
	}
	if err == nil {
		role := roleOf(name)
		r.fetched[role] = b
		if role == data.CanonicalRootRole {
			r.pin.observe(b)
		}
	}
	return b, err
}

func (r *remote) get(name string, size int64) ([]byte, error) {
	limit := r.lim.MaxMetadataBytes
	why := fmt.Sprintf("%s.json exceeds %d bytes", name, limit)
	if size >= 0 && size < limit {
		limit, why = size, fmt.Sprintf("%s.json is larger than the %d bytes expected", name, size)
	}
	if left := r.lim.MaxVerifyBytes - r.bytes; left < limit {
		limit, why = max(left, 0), fmt.Sprintf("the trust data of one verification exceeds %d bytes", r.lim.MaxVerifyBytes)
	}
	if r.nreq >= r.lim.MaxRequests {
		return nil, r.over("more than %d requests to the notary server in one verification", r.lim.MaxRequests)
	}
	u := *r.srv.base
	u.Path = path.Join(u.Path, "v2", r.gun, "_trust/tuf", name+".json")
	rep, err := r.srv.get(r.ctx, &u, r.gun, limit, &r.nreq)
	r.bytes += int64(len(rep.body))
	if errors.Is(err, errTooLarge) {
		return nil, r.over("%s", why)
	}
	if err != nil {
		if r.netErr == nil {
			r.netErr, r.refused = err, errors.Is(err, errAuth)
		}
		return nil, store.NetworkError{Wrapped: err}
	}
	switch rep.status {
	case http.StatusOK:
		return rep.body, nil
	case http.StatusNotFound:
		return nil, store.ErrMetaNotFound{Resource: name}
	}
	err = fmt.Errorf("answered %s for %s.json", rep.text, name)
	if r.netErr == nil {
		r.netErr, r.refused = err, true
	}
	return nil, store.NetworkError{Wrapped: err}
}

// over records what went over a cap and returns notary's error for it.
func (r *remote) over(format string, args ...any) error {
	if r.overrun == "" {
		r.overrun = fmt.Sprintf(format, args...)
	}
	return store.ErrMaliciousServer{}
}

var (
	versioned  = regexp.MustCompile(`^[0-9]+\.`)
	consistent = regexp.MustCompile(`\.[0-9a-f]{64}$`)
)

// roleOf returns the role of a metadata file name.
func roleOf(name string) data.RoleName {
	name = versioned.ReplaceAllString(name, "")
	return data.RoleName(consistent.ReplaceAllString(name, ""))
}

// The verifier only reads. notary's reading path never calls these.

func (r *remote) Set(string, []byte) error                { return store.ErrOffline{} }
func (r *remote) SetMulti(map[string][]byte) error        { return store.ErrOffline{} }
func (r *remote) Remove(string) error                     { return store.ErrOffline{} }
func (r *remote) RemoveAll() error                        { return store.ErrOffline{} }
func (r *remote) GetKey(data.RoleName) ([]byte, error)    { return nil, store.ErrOffline{} }
func (r *remote) RotateKey(data.RoleName) ([]byte, error) { return nil, store.ErrOffline{} }
func (r *remote) Location() string                        { return r.srv.base.Host }
