// Package cosign answers: did the policy's cosign trust roots sign this
// image digest, and attest it as the rule asks? It finds an image's
// signatures in both formats cosign writes, the v2 `sha256-<hex>.sig` tag
// (simple-signing payload) and the v3 Sigstore bundle attached as an OCI 1.1
// referrer (DSSE in-toto statement), and checks them against the policy's
// trust roots: a public key, or a keyless (Fulcio) identity whose
// certificate chain, Rekor entry and SCT are verified offline with the
// validator's Sigstore material (see keyless.go). It also checks the
// in-toto attestations a rule requires (see attest.go).
//
// It owns the cosign section of the policy: Section (section.go) checks
// it with compile, the very function New builds the roots from. It must
// not know NRI, Kubernetes or the gate. No TUF root is fetched, no
// transparency log is queried, and nothing is dialled but the image's
// registry.
//
// A signature counts for a trust root when it verifies with the root's key
// (or, for a keyless root, with a certificate that the root's checks
// accept) and names, as its signed content, the very digest it was found
// under.
package cosign

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/nri-image-verifier/nri-image-verifier/verify"
	"github.com/nri-image-verifier/nri-image-verifier/verify/registry"
)

// Verifier is a cosign validator. It is safe for concurrent use.
type Verifier struct {
	validator *policy.Validator
	reg       *registry.Client
	roots     map[string]*trustRoot
	// hints remembers, per repository, where the signatures that met a
	// policy were found, so that the next digest of the repository looks
	// there first (see lookups).
	hints hints
	// attestations are the rules' required attestations, compiled once.
	attestations attestations
}

var _ verify.Verifier = (*Verifier)(nil)

// New builds the validator's trust roots (parsed keys, keyless identities
// and their Sigstore material) once, compiled by the function its Section
// checks them with.
func New(v *policy.Validator, reg *registry.Client) (*Verifier, error) {
	if v == nil {
		return nil, fmt.Errorf("cosign validator: none given")
	}
	if reg == nil {
		return nil, fmt.Errorf("cosign validator %q: no registry client", v.Name)
	}
	if len(v.TrustRoots) == 0 {
		return nil, fmt.Errorf("cosign validator %q: no trust roots", v.Name)
	}
	var problems policy.Errors
	compiled := compile(&problems, "", v)
	if err := problems.Err(); err != nil {
		return nil, fmt.Errorf("cosign validator %q: %w", v.Name, err)
	}
	roots := make(map[string]*trustRoot, len(v.TrustRoots))
	for _, tr := range v.TrustRoots {
		r, err := compiled.root(tr)
		if err != nil {
			return nil, fmt.Errorf("cosign validator %q: %w", v.Name, err)
		}
		roots[tr.Name] = r
	}
	return &Verifier{validator: v, reg: reg, roots: roots}, nil
}

// Verify looks up the signatures of s's candidate digests (see
// registry.Client.Candidates) and applies with's threshold and required
// roots. Registry failures that leave the answer open are returned as
// errors; everything else is a verdict.
//
// It stops as soon as the chain check has confirmed the candidates and the
// signatures verified so far meet the policy: more signatures can only add
// signers, never take an allow back. So an allowed verdict's Signers may
// name only the roots found by then. Lookups that might still be needed are
// never skipped: see lookups for the order they are made in.
func (v *Verifier) Verify(ctx context.Context, s verify.Subject, with policy.With) (verify.Verdict, error) {
	names := with.Selected(v.validator)
	roots := make([]*trustRoot, 0, len(names))
	for _, n := range names {
		r, ok := v.roots[n]
		if !ok {
			return deny("trust root %q is not defined in cosign validator %q", n, v.validator.Name), nil
		}
		roots = append(roots, r.forRule(with))
	}
	// Never below 1: a cosign rule never admits an unsigned image.
	threshold, required := with.Need(v.validator)

	repo, err := name.NewRepository(s.Repository)
	if err != nil {
		return deny("repository %q is not valid: %v", s.Repository, err), nil
	}
	if _, err := v1.NewHash(s.Digest); err != nil {
		return deny("image digest %q is not valid: %v", s.Digest, err), nil
	}

	// The top-level digest is a candidate whatever the chain check finds,
	// so its signatures are looked up while the chain is checked.
	if len(with.Attestations) > 0 {
		ctx = withListings(ctx) // shared with the attestation check
	}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	t := newTally(len(roots))
	run := newLookups(lctx, v, repo, roots, t, v.hints.get(s.Repository))
	cands, err := run.wait(s.Digest, func(ctx context.Context) ([]string, error) {
		return v.reg.Candidates(ctx, repo, s.Digest, s.ConfigDigest)
	}, func() bool { return t.met(threshold, required, names) })
	// Whatever is still in flight is moot: the answer is known.
	cancel()
	run.wg.Wait()
	if err != nil {
		if registry.IsDefinitive(err) {
			return deny("%v", err), nil
		}
		return verify.Verdict{}, fmt.Errorf("cosign validator %q: %w", v.validator.Name, err)
	}

	verdict := t.verdict(cands, names, threshold, required)
	if verdict.Allowed {
		v.hints.put(s.Repository, t.contributed())
		if len(with.Attestations) == 0 {
			return verdict, nil
		}
		// Only an image whose signatures pass is worth the lookups.
		return v.withAttestations(ctx, repo, cands, roots, names, with, verdict)
	}
	if t.err != nil {
		// A signature we could not fetch might have met the policy.
		return verify.Verdict{}, fmt.Errorf("cosign validator %q: %w", v.validator.Name, t.err)
	}
	return verdict, nil
}

func deny(format string, args ...any) verify.Verdict {
	return verify.Verdict{Reason: fmt.Sprintf(format, args...)}
}

// sigTag is the legacy signature tag of digest: sha256-<hex>.sig.
func sigTag(repo name.Repository, digest string) name.Tag {
	return repo.Tag(strings.Replace(digest, ":", "-", 1) + ".sig")
}
