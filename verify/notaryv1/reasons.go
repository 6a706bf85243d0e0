package notaryv1

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nri-image-verifier/nri-image-verifier/verify"
	"github.com/theupdateframework/notary/client"
	store "github.com/theupdateframework/notary/storage"
	"github.com/theupdateframework/notary/trustpinning"
	"github.com/theupdateframework/notary/tuf"
	"github.com/theupdateframework/notary/tuf/data"
	"github.com/theupdateframework/notary/tuf/signed"
)

// failure turns a failed TUF update into a verdict (what the server sent
// is wrong or missing) or an error (the server could not be asked), each
// with its own reason.
func (v *Verifier) failure(gun string, l *loaded, err error) (verify.Verdict, error) {
	host := v.srv.base.Host
	var (
		notExist     client.ErrRepositoryNotExist
		notInit      client.ErrRepoNotInitialized
		notFound     store.ErrMetaNotFound
		tooMuch      store.ErrMaliciousServer
		expired      signed.ErrExpired
		rollback     signed.ErrLowVersion
		pinFail      *trustpinning.ErrValidationFail
		rotationFail *trustpinning.ErrRootRotationFail
		netErr       store.NetworkError
		unavailable  store.ErrServerUnavailable
		offline      store.ErrOffline
	)
	var busy *busyError
	switch {
	case errors.As(err, &busy):
		return verify.Verdict{}, fmt.Errorf("notaryv1 validator %q: %w", v.validator.Name, err)
	case errors.As(l.remote.timestampErr, &netErr):
		// Whatever notary then found wrong (an expired cached timestamp,
		// say) is about old data: the server is the problem.
		return verify.Verdict{}, unreachable(host, l.remote, err)
	case errors.As(err, &notExist), errors.As(err, &notInit):
		return deny("no trust data for %s on notary server %s (never signed with Docker Content Trust, or another GUN)", gun, host), nil
	case errors.As(err, &tooMuch) && l.remote.overrun != "":
		return deny("notary server %s sent too much trust data for %s: %s", host, gun, l.remote.overrun), nil
	case errors.As(err, &expired):
		return deny("expired: the %s metadata of %s expired at %s", expired.Role, gun, expired.Expired), nil
	case errors.As(err, &rollback):
		return deny("rollback: notary server %s sent version %d of trust data for %s, older than version %d already seen",
			host, rollback.Actual, gun, rollback.Current), nil
	case errors.As(err, &pinFail) && strings.Contains(pinFail.Reason, "trust_pinning"):
		return deny("root key not pinned: no root key of %s's root metadata is %s", gun, rootsPhrase(l.remote.pin.roots)), nil
	case errors.As(err, &pinFail):
		return deny("the root metadata of %s is not valid: %s", gun, pinFail.Reason), nil
	case errors.As(err, &rotationFail):
		return deny("the root metadata of %s is not signed by the keys of the root it replaces: %s", gun, rotationFail.Reason), nil
	case errors.As(err, &notFound):
		return deny("the trust data of %s on notary server %s is incomplete: %s not found", gun, host, notFound.Resource), nil
	case errors.As(err, &netErr), errors.As(err, &unavailable), errors.As(err, &offline),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return verify.Verdict{}, unreachable(host, l.remote, err)
	case l.remote.netErr != nil:
		// Whatever notary made of it, it did not have the server's answers.
		return verify.Verdict{}, unreachable(host, l.remote, err)
	}
	// Signatures below threshold, wrong checksums, malformed metadata.
	return deny("the trust data of %s failed TUF validation: %v", gun, err), nil
}

func unreachable(host string, r *remote, err error) error {
	if r.netErr != nil {
		err = r.netErr
	}
	if r.refused {
		return fmt.Errorf("notary server %s %w", host, err)
	}
	return fmt.Errorf("notary server %s unreachable: %w", host, err)
}

func rootsPhrase(roots []*trustRoot) string {
	if len(roots) == 1 {
		return fmt.Sprintf("trust root %q", roots[0].name)
	}
	names := make([]string, len(roots))
	for i, r := range roots {
		names[i] = r.name
	}
	return fmt.Sprintf("one of trust roots %q", names)
}

// checkExpiry checks the base roles against now. notary checks them too,
// against the system clock; this makes the validator's clock count (and
// lets tests move it). Delegations are checked where they are used.
func checkExpiry(repo *tuf.Repo, gun string, now time.Time) string {
	for _, e := range []struct {
		role data.RoleName
		at   time.Time
	}{
		{data.CanonicalRootRole, repo.Root.Signed.Expires},
		{data.CanonicalTimestampRole, repo.Timestamp.Signed.Expires},
		{data.CanonicalSnapshotRole, repo.Snapshot.Signed.Expires},
		{data.CanonicalTargetsRole, repo.Targets[data.CanonicalTargetsRole].Signed.Expires},
	} {
		if now.After(e.at) {
			return expiredReason(e.role, gun, e.at)
		}
	}
	return ""
}

func expiredReason(role data.RoleName, gun string, at time.Time) string {
	return fmt.Sprintf("expired: the %s metadata of %s expired at %s", role, gun, at.UTC().Format(time.RFC3339))
}
