// Package notation answers: did the policy's Notary Project (notation)
// trust roots sign this image digest? It finds an image's notation
// signatures, OCI 1.1 referrers of artifact type
// application/vnd.cncf.notary.signature with a JWS or COSE envelope, through
// the shared registry client, and has notation-go's verifier check each one
// against a trust policy made from the rule: the policy's X.509 trust roots
// (an in-memory trust store), the pinned signer identities, the
// verification level and verifyTimestamp. It owns the notation section of
// the policy: Section (section.go) checks it with the function New parses
// the roots with. It must not know NRI, Kubernetes or the gate. Nothing is
// read from ~/.config/notation, no plugin is run, and nothing is dialled but
// the image's registry (no OCSP, no CRL).
//
// A signature counts for a trust root when notation accepts it, its
// certificate chain contains one of the root's certificates, and its
// signed payload names the very manifest (digest, media type and size) it
// is attached to.
package notation

import (
	"context"
	"fmt"

	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/nri-image-verifier/nri-image-verifier/verify"
	"github.com/nri-image-verifier/nri-image-verifier/verify/attached"
	"github.com/nri-image-verifier/nri-image-verifier/verify/registry"
)

// Verifier is a notation validator. It is safe for concurrent use.
type Verifier struct {
	base attached.Validator[*root]
}

var _ verify.Verifier = (*Verifier)(nil)

// New parses the validator's trust roots once, with the function its
// Section checks them with.
func New(v *policy.Validator, reg *registry.Client) (*Verifier, error) {
	base, err := attached.New(policy.TypeNotation, v, reg, buildRoots)
	if err != nil {
		return nil, err
	}
	return &Verifier{base: base}, nil
}

// buildRoots compiles v's section and returns its trust roots, by name.
func buildRoots(v *policy.Validator) (map[string]*root, error) {
	var problems policy.Errors
	roots := compile(&problems, "", v)
	if err := problems.Err(); err != nil {
		return nil, err
	}
	for _, tr := range v.TrustRoots {
		if roots[tr.Name] == nil {
			return nil, fmt.Errorf("trust root %q: cert: required", tr.Name)
		}
	}
	return roots, nil
}

// Verify examines the notation signatures of s's candidate digests (see
// registry.Client.Candidates) and applies with's threshold and required
// roots, as for cosign. At level audit, a signature that notation accepts
// (its integrity and its binding to the digest hold) admits the image even
// if its signer is not trusted, as the Notary Project specifies; the
// verdict then says what was only logged. Registry failures that leave the
// answer open are returned as errors; everything else is a verdict.
func (v *Verifier) Verify(ctx context.Context, s verify.Subject, with policy.With) (verify.Verdict, error) {
	level := levelOf(with)
	switch level {
	case LevelStrict, LevelPermissive, LevelAudit:
	default:
		// The policy loader refuses these; never fall through to
		// notation's "skip".
		return deny("verification level %q is not allowed at the node", level), nil
	}
	sel, reason := v.base.Select(with)
	if reason != "" {
		return deny("%s", reason), nil
	}
	nv, err := newNotationVerifier(sel.Roots, with)
	if err != nil {
		return deny("notation validator %q: the rule is not a valid notation trust policy: %v", v.base.Policy.Name, err), nil
	}
	repo, reason := attached.Repository(s)
	if reason != "" {
		return deny("%s", reason), nil
	}
	cands, err := v.base.Candidates(ctx, repo, s)
	if err != nil {
		return v.base.Failed(err)
	}

	t := &tally{signed: make([]bool, len(sel.Roots)), level: level}
	c := &check{v: v, nv: nv, repo: repo, roots: sel.Roots, ids: identitiesOf(with)}
	for _, cand := range cands {
		t.add(c.signatures(ctx, cand))
	}
	verdict := t.verdict(cands, sel.Names, sel.Threshold, sel.Required)
	if !verdict.Allowed && t.err != nil {
		// A signature we could not fetch might have met the policy.
		return verify.Verdict{}, v.base.Transient(t.err)
	}
	return verdict, nil
}

func deny(format string, args ...any) verify.Verdict {
	return verify.Verdict{Reason: fmt.Sprintf(format, args...)}
}
