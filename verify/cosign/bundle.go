package cosign

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/nri-image-verifier/nri-image-verifier/verify/registry"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	sgverify "github.com/sigstore/sigstore-go/pkg/verify"
	"golang.org/x/sync/errgroup"
)

// cosign v3's signature: a Sigstore bundle referrer whose DSSE envelope
// holds an in-toto statement of this predicate type.
const (
	bundleMediaType     = "application/vnd.dev.sigstore.bundle.v0.3+json"
	signPredicateType   = "https://sigstore.dev/cosign/sign/v1"
	predicateAnnotation = "dev.sigstore.bundle.predicateType"
)

// bundles examines the Sigstore bundles attached to cand as referrers.
func (v *Verifier) bundles(ctx context.Context, repo name.Repository, cand string, roots []*trustRoot) result {
	descs, err := v.referrers(ctx, repo, cand)
	if err != nil {
		return result{err: fmt.Errorf("looking up referrers of %s: %w", cand, err)}
	}
	// Attestations (SBOM, provenance) are bundles too. Skipping those whose
	// annotation names another predicate type only ever drops evidence, so
	// trusting the unsigned annotation for it is safe, and it keeps them
	// from using up the cap.
	sigs := descs[:0:0]
	for _, d := range descs {
		if pt, ok := d.Annotations[predicateAnnotation]; ok && pt != signPredicateType {
			continue
		}
		sigs = append(sigs, d)
	}
	var res result
	if limit := v.base.Reg.Limits().MaxSignatures; len(sigs) > limit {
		res.skipped, sigs = len(sigs)-limit, sigs[:limit]
	}
	want, err := hex.DecodeString(strings.TrimPrefix(cand, "sha256:"))
	if err != nil || !strings.HasPrefix(cand, "sha256:") {
		return result{findings: []finding{failed(rankMalformed, "digest %s is not a sha256 digest", cand)}}
	}
	found := make([]*finding, len(sigs))
	errs := make([]error, len(sigs))
	var g errgroup.Group
	g.SetLimit(4)
	for i, d := range sigs {
		g.Go(func() error {
			found[i], errs[i] = v.checkBundle(ctx, repo, cand, want, d, roots)
			return nil
		})
	}
	_ = g.Wait() // results are in found and errs
	return collect(res, found, errs)
}

// checkBundle fetches and verifies one referrer. Nil, nil: it is not a
// cosign bundle after all.
func (v *Verifier) checkBundle(ctx context.Context, repo name.Repository, cand string, want []byte, d v1.Descriptor, roots []*trustRoot) (*finding, error) {
	b, problem, err := v.fetchBundle(ctx, repo, cand, d, v.base.Reg.SignatureBlob)
	if b == nil {
		if problem != "" {
			return ptr(failed(rankMalformed, "%s", problem)), nil
		}
		return nil, err
	}
	if b.GetDsseEnvelope() == nil {
		return ptr(failed(rankContent, "bundle in referrer %s holds a message signature, not a cosign signature statement", d.Digest)), nil
	}
	var (
		signedBy []int
		note     finding
	)
	for i, r := range roots {
		if f, ok := r.verifyBundle(b, cand, want, d.Digest.String()); ok {
			signedBy = append(signedBy, i)
		} else if f.rank > note.rank {
			note = f
		}
	}
	if len(signedBy) == 0 {
		return &note, nil
	}
	return &finding{signedBy: signedBy}, nil
}

// fetchBundle reads the Sigstore bundle of referrer d of cand: its
// manifest, then its bundle layer. Without a bundle it returns either what
// is wrong with the referrer, in a line, or nothing (not a bundle after
// all: the registry listed it loosely, or it was deleted since), or an
// error (it could not be fetched). Signatures and attestations both read
// bundles here; blob fetches the bundle, under the size cap for its kind
// (the referrer's manifest is always small: the signature cap).
func (v *Verifier) fetchBundle(ctx context.Context, repo name.Repository, cand string, d v1.Descriptor, blob func(context.Context, name.Digest) ([]byte, error)) (*bundle.Bundle, string, error) {
	m, err := v.base.Reg.SignatureManifest(ctx, repo.Digest(d.Digest.String()))
	if registry.IsNotFound(err) {
		return nil, "", nil // deleted since listed
	}
	if err != nil {
		return nil, "", fmt.Errorf("fetching referrer %s of %s: %w", d.Digest, cand, err)
	}
	man, err := v1.ParseManifest(bytes.NewReader(m.Raw))
	if err != nil {
		if d.ArtifactType == bundleMediaType {
			return nil, fmt.Sprintf("bundle referrer %s of %s is not a valid manifest: %v", d.Digest, cand, err), nil
		}
		return nil, "", nil
	}
	at := man.ArtifactType
	if at == "" {
		at = string(man.Config.MediaType)
	}
	if at != bundleMediaType {
		return nil, "", nil // the registry listed it loosely (see registry.Referrers)
	}
	var layer *v1.Descriptor
	for i := range man.Layers {
		if man.Layers[i].MediaType == bundleMediaType {
			layer = &man.Layers[i]
			break
		}
	}
	if layer == nil {
		return nil, fmt.Sprintf("bundle referrer %s of %s has no bundle layer", d.Digest, cand), nil
	}
	raw, err := blob(ctx, repo.Digest(layer.Digest.String()))
	if registry.IsNotFound(err) {
		return nil, fmt.Sprintf("bundle %s of referrer %s is missing from the registry", layer.Digest, d.Digest), nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("fetching bundle of referrer %s of %s: %w", d.Digest, cand, err)
	}
	var b bundle.Bundle
	if err := b.UnmarshalJSON(raw); err != nil {
		return nil, fmt.Sprintf("referrer %s of %s holds no valid Sigstore bundle: %v", d.Digest, cand, err), nil
	}
	return &b, "", nil
}

// verifyBundle checks b with this root (its key, or its keyless identity
// under r.rule), the way sigstore-go's verify is meant to be used: the
// signature over the statement, the statement's subject against the
// digest, then the predicate type.
func (r *trustRoot) verifyBundle(b *bundle.Bundle, cand string, want []byte, ref string) (finding, bool) {
	res, err := r.verify(b, r.rule, sgverify.WithArtifactDigest("sha256", want))
	if err != nil {
		// Tell a genuine signature for another digest (a replay) from a
		// bad one, for the reason: verify the signature alone. Only the
		// message changes; either way the bundle does not count.
		if alone, err2 := r.verify(b, r.rule, sgverify.WithoutArtifactUnsafe()); err2 == nil && alone.Statement != nil {
			return failed(rankDigest, "signature names digest %s, not %s", subjectDigests(alone.Statement.GetSubject()), cand), false
		}
		return failed(rankKey, "bundle in referrer %s does not verify: %v", ref, err), false
	}
	if res.Statement == nil {
		return failed(rankContent, "bundle in referrer %s has no in-toto statement", ref), false
	}
	if pt := res.Statement.GetPredicateType(); pt != signPredicateType {
		return failed(rankContent, "bundle in referrer %s has predicate type %q, not %q", ref, pt, signPredicateType), false
	}
	return finding{}, true
}

// subjectDigests lists a statement's sha256 subjects for a message.
func subjectDigests[S interface{ GetDigest() map[string]string }](subjects []S) string {
	var ds []string
	for _, s := range subjects {
		if h, ok := s.GetDigest()["sha256"]; ok {
			ds = append(ds, "sha256:"+h)
		}
	}
	if len(ds) == 0 {
		return "(no sha256 digest)"
	}
	return strings.Join(ds, ", ")
}
