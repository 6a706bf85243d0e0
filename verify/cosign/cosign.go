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

	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/nri-image-verifier/nri-image-verifier/verify"
	"github.com/nri-image-verifier/nri-image-verifier/verify/attached"
	"github.com/nri-image-verifier/nri-image-verifier/verify/registry"
)

// Verifier is a cosign validator. It is safe for concurrent use.
type Verifier struct {
	base attached.Validator[*trustRoot]
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
	base, err := attached.New(policy.TypeCosign, v, reg, buildRoots)
	if err != nil {
		return nil, err
	}
	return &Verifier{base: base}, nil
}

// buildRoots compiles v's section and builds its trust roots, by name.
func buildRoots(v *policy.Validator) (map[string]*trustRoot, error) {
	var problems policy.Errors
	compiled := compile(&problems, "", v)
	if err := problems.Err(); err != nil {
		return nil, err
	}
	roots := make(map[string]*trustRoot, len(v.TrustRoots))
	for _, tr := range v.TrustRoots {
		r, err := compiled.root(tr)
		if err != nil {
			return nil, err
		}
		roots[tr.Name] = r
	}
	return roots, nil
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
	sel, reason := v.base.Select(with)
	if reason != "" {
		return deny("%s", reason), nil
	}
	roots, names := sel.Roots, sel.Names
	for i, r := range roots {
		roots[i] = r.forRule(with)
	}
	repo, reason := attached.Repository(s)
	if reason != "" {
		return deny("%s", reason), nil
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
		return v.base.Candidates(ctx, repo, s)
	}, func() bool { return t.met(sel.Threshold, sel.Required, names) })
	// Whatever is still in flight is moot: the answer is known.
	cancel()
	run.wg.Wait()
	if err != nil {
		return v.base.Failed(err)
	}

	verdict := t.verdict(cands, names, sel.Threshold, sel.Required)
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
		return verify.Verdict{}, v.base.Transient(t.err)
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
