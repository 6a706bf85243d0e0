package notaryv1

import (
	"context"
	"fmt"

	"github.com/theupdateframework/notary/client"
	"github.com/theupdateframework/notary/tuf"
	"github.com/theupdateframework/notary/tuf/data"
)

// loaded is the outcome of one TUF update.
type loaded struct {
	repo   *tuf.Repo
	remote *remote
}

// load brings gun's trust data up to date with notary's TUF client: root
// (pinned to roots on first sight, rotated only as the previous root
// allows), timestamp, snapshot, targets and every delegation, each checked
// for signatures, checksums, versions against the cached ones, and expiry.
// The returned loaded is non-nil also on error, for failure to explain.
func (v *Verifier) load(ctx context.Context, gun string, roots []*trustRoot) (*loaded, error) {
	l := &loaded{remote: newRemote(ctx, v.srv, gun, v.opts, newPinning(gun, roots))}
	st := v.repos.get(gun)
	if err := st.lock(ctx); err != nil {
		return l, &busyError{err}
	}
	defer st.unlock()
	repo, err := loadTUF(client.TUFLoadOptions{
		GUN:          data.GUN(gun),
		TrustPinning: l.remote.pin.cfg,
		Cache:        st.cache,
		RemoteStore:  l.remote,
	})
	if err != nil {
		return l, err
	}
	if err := l.remote.timestampErr; err != nil {
		// notary fell back on the cached timestamp. That is still signed
		// and unexpired, but could hide a withdrawn signature for as long
		// as the timestamp lives (two weeks on notary-server): the gate
		// wants today's answer, and the verdict cache bridges outages.
		return l, err
	}
	if repo.Root == nil || repo.Timestamp == nil || repo.Snapshot == nil || repo.Targets[data.CanonicalTargetsRole] == nil {
		return l, fmt.Errorf("notary returned incomplete trust data")
	}
	l.repo = repo
	return l, nil
}

// loadTUF is notary's LoadTUFRepo, which parses what the server sends. A
// panic in there on hostile metadata must not take the node's gate down
// with it: it becomes an error (and so a deny), like any invalid data.
func loadTUF(opts client.TUFLoadOptions) (repo *tuf.Repo, err error) {
	defer func() {
		if r := recover(); r != nil {
			repo, err = nil, fmt.Errorf("notary's client failed on the trust data: %v", r)
		}
	}()
	repo, _, err = client.LoadTUFRepo(opts)
	return repo, err
}

// busyError is a verification that ran out of time waiting for another
// one of the same repository.
type busyError struct{ err error }

func (e *busyError) Error() string { return e.err.Error() }
func (e *busyError) Unwrap() error { return e.err }
