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

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/nri-image-verifier/nri-image-verifier/verify"
	"github.com/nri-image-verifier/nri-image-verifier/verify/registry"
)

// Verifier is a notation validator. It is safe for concurrent use.
type Verifier struct {
	validator *policy.Validator
	reg       *registry.Client
	roots     map[string]*root
}

var _ verify.Verifier = (*Verifier)(nil)

// New parses the validator's trust roots once, with the function its
// Section checks them with.
func New(v *policy.Validator, reg *registry.Client) (*Verifier, error) {
	if v == nil {
		return nil, fmt.Errorf("notation validator: none given")
	}
	if reg == nil {
		return nil, fmt.Errorf("notation validator %q: no registry client", v.Name)
	}
	if len(v.TrustRoots) == 0 {
		return nil, fmt.Errorf("notation validator %q: no trust roots", v.Name)
	}
	var problems policy.Errors
	roots := compile(&problems, "", v)
	if err := problems.Err(); err != nil {
		return nil, fmt.Errorf("notation validator %q: %w", v.Name, err)
	}
	for _, tr := range v.TrustRoots {
		if roots[tr.Name] == nil {
			return nil, fmt.Errorf("notation validator %q: trust root %q: cert: required", v.Name, tr.Name)
		}
	}
	return &Verifier{validator: v, reg: reg, roots: roots}, nil
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
	names := with.Selected(v.validator)
	roots := make([]*root, 0, len(names))
	for _, n := range names {
		r, ok := v.roots[n]
		if !ok {
			return deny("trust root %q is not defined in notation validator %q", n, v.validator.Name), nil
		}
		roots = append(roots, r)
	}
	threshold, required := with.Need(v.validator)
	nv, err := newNotationVerifier(roots, with)
	if err != nil {
		return deny("notation validator %q: the rule is not a valid notation trust policy: %v", v.validator.Name, err), nil
	}

	repo, err := name.NewRepository(s.Repository)
	if err != nil {
		return deny("repository %q is not valid: %v", s.Repository, err), nil
	}
	if _, err := v1.NewHash(s.Digest); err != nil {
		return deny("image digest %q is not valid: %v", s.Digest, err), nil
	}
	cands, err := v.reg.Candidates(ctx, repo, s.Digest, s.ConfigDigest)
	if err != nil {
		if registry.IsDefinitive(err) {
			return deny("%v", err), nil
		}
		return verify.Verdict{}, fmt.Errorf("notation validator %q: %w", v.validator.Name, err)
	}

	t := &tally{signed: make([]bool, len(roots)), level: level}
	c := &check{v: v, nv: nv, repo: repo, roots: roots, ids: with.TrustedIdentities}
	for _, cand := range cands {
		t.add(c.signatures(ctx, cand))
	}
	verdict := t.verdict(cands, names, threshold, required)
	if !verdict.Allowed && t.err != nil {
		// A signature we could not fetch might have met the policy.
		return verify.Verdict{}, fmt.Errorf("notation validator %q: %w", v.validator.Name, t.err)
	}
	return verdict, nil
}

func deny(format string, args ...any) verify.Verdict {
	return verify.Verdict{Reason: fmt.Sprintf(format, args...)}
}
