package notaryv1

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nri-image-verifier/nri-image-verifier/verify"
	"github.com/theupdateframework/notary/tuf"
	"github.com/theupdateframework/notary/tuf/data"
)

// How the digest is found. Connaisseur resolves the image's tag at
// admission and looks that tag up in the targets; an image given by digest
// it looks up by hash. The node never trusts a tag and is given the digest
// the runtime uses, so here a role vouches for the image when one of its
// targets, whatever its name (within the role's delegated paths), has that
// digest as its hash. That binds the decision to what actually runs; a
// digest signed under an older tag still counts while that target is in
// the signed metadata.
//
// Which roles must vouch is Connaisseur's choice:
//   - with.delegations set: each of those roles (each must have signed);
//   - else, when targets delegates nothing: the targets role;
//   - else targets/releases (Docker's signing role), or the targets role
//     when targets/releases is declared but has never been signed.

// role is a role whose targets are searched.
type role struct {
	data.DelegationRole
	required bool // named in with.delegations
}

func (r role) label() string {
	if r.required {
		return "required delegation " + r.Name.String()
	}
	return "role " + r.Name.String()
}

// chooseRoles returns the roles that must list the digest, or why none can.
func chooseRoles(l *loaded, gun string, delegations []string, now time.Time) ([]role, string) {
	repo := l.repo
	targets := repo.Targets[data.CanonicalTargetsRole]
	declared := make([]string, 0, len(targets.Signed.Delegations.Roles))
	for _, r := range targets.Signed.Delegations.Roles {
		declared = append(declared, r.Name.String())
	}
	var roles []role
	for _, d := range delegations {
		name := data.RoleName(delegationRole(d))
		dr, reason := delegation(l, gun, name, declared, now)
		if reason != "" {
			return nil, "delegation missing: " + reason
		}
		roles = append(roles, role{DelegationRole: dr, required: true})
	}
	if len(roles) > 0 {
		return roles, ""
	}
	top := role{DelegationRole: data.DelegationRole{BaseRole: data.BaseRole{Name: data.CanonicalTargetsRole}, Paths: []string{""}}}
	if len(declared) == 0 {
		return []role{top}, ""
	}
	releases := data.RoleName("targets/releases")
	if !slices.Contains(declared, releases.String()) {
		return nil, fmt.Sprintf("the targets of %s delegate to %v and not to targets/releases: name the delegations to require in with.delegations", gun, declared)
	}
	if _, listed := repo.Snapshot.Signed.Meta[releases.String()]; !listed {
		return []role{top}, "" // declared, never signed: Connaisseur's fallback
	}
	dr, reason := delegation(l, gun, releases, declared, now)
	if reason != "" {
		return nil, reason
	}
	return []role{{DelegationRole: dr}}, ""
}

// delegation returns the delegation role name, validated by notary and
// unexpired, or why it cannot be used.
func delegation(l *loaded, gun string, name data.RoleName, declared []string, now time.Time) (data.DelegationRole, string) {
	repo := l.repo
	dr, err := repo.GetDelegationRole(name)
	if err != nil {
		return dr, fmt.Sprintf("%s is not declared in the trust data of %s (declared: %v)", name, gun, declared)
	}
	t, ok := repo.Targets[name]
	if !ok {
		if _, listed := repo.Snapshot.Signed.Meta[name.String()]; !listed {
			return dr, fmt.Sprintf("%s is declared in the trust data of %s but has never signed anything", name, gun)
		}
		// notary leaves out a delegation that is expired or not signed by
		// its keys, without saying which: look at what was downloaded.
		if at, ok := expiresOf(l.remote.fetched[name]); ok && now.After(at) {
			return dr, expiredReason(name, gun, at)
		}
		return dr, fmt.Sprintf("the %s metadata of %s is not validly signed by that delegation's keys", name, gun)
	}
	if now.After(t.Signed.Expires) {
		return dr, expiredReason(name, gun, t.Signed.Expires)
	}
	return dr, ""
}

// expiresOf reads the expiry of raw metadata, unverified (for messages).
func expiresOf(raw []byte) (time.Time, bool) {
	var m struct {
		Signed struct {
			Expires time.Time `json:"expires"`
		} `json:"signed"`
	}
	if len(raw) == 0 || json.Unmarshal(raw, &m) != nil || m.Signed.Expires.IsZero() {
		return time.Time{}, false
	}
	return m.Signed.Expires, true
}

// findDigest allows when every role lists want as a target. When none
// does, the digest is not signed (a mismatch); when some required
// delegations did and others did not, those are missing.
func findDigest(repo *tuf.Repo, gun string, roles []role, want digest, signers []string) verify.Verdict {
	var found, signedBy []string
	var missing []role
	for _, r := range roles {
		names := signedAs(repo.Targets[r.Name], r.DelegationRole, want)
		if len(names) == 0 {
			missing = append(missing, r)
			continue
		}
		signedBy = append(signedBy, r.Name.String())
		found = append(found, fmt.Sprintf("%s as %s", r.Name, strings.Join(names, ", ")))
	}
	switch {
	case len(missing) == len(roles):
		r := missing[0]
		return verify.Verdict{Reason: fmt.Sprintf("digest mismatch: no target of %s in the trust data of %s has digest %s%s",
			r.label(), gun, want.str, otherTargets(repo.Targets[r.Name], r.DelegationRole, want.algo))}
	case len(missing) > 0:
		names := make([]string, len(missing))
		for i, r := range missing {
			names[i] = r.Name.String()
		}
		return verify.Verdict{Reason: fmt.Sprintf("delegation missing: required delegation %s of %s has not signed %s (signed by %s)%s",
			strings.Join(names, ", "), gun, want.str, strings.Join(signedBy, ", "),
			otherTargets(repo.Targets[missing[0].Name], missing[0].DelegationRole, want.algo))}
	}
	return verify.Verdict{
		Allowed: true,
		Signers: signers,
		Reason:  fmt.Sprintf("notary trust data of %s (root keys %v) signs %s: %s", gun, signers, want.str, strings.Join(found, "; ")),
	}
}

// signedAs returns the target names of t within r's paths whose hash is
// want, sorted.
func signedAs(t *data.SignedTargets, r data.DelegationRole, want digest) []string {
	var names []string
	for name, meta := range t.Signed.Targets {
		if h, ok := meta.Hashes[want.algo]; ok && bytes.Equal(h, want.sum) && r.CheckPaths(name) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// otherTargets describes a few of what t does sign, so that a tag signed
// for another digest shows as such.
func otherTargets(t *data.SignedTargets, r data.DelegationRole, algo string) string {
	const show = 3
	var names []string
	for name := range t.Signed.Targets {
		if r.CheckPaths(name) {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return " (it signs no targets)"
	}
	slices.Sort(names)
	var parts []string
	for _, n := range names[:min(show, len(names))] {
		h := t.Signed.Targets[n].Hashes[algo]
		parts = append(parts, fmt.Sprintf("%s -> %s:%s", n, algo, hex.EncodeToString(h)))
	}
	more := ""
	if len(names) > show {
		more = fmt.Sprintf(" and %d more", len(names)-show)
	}
	return fmt.Sprintf(" (it signs %s%s)", strings.Join(parts, ", "), more)
}
