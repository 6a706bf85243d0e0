package cosign

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/nri-image-verifier/nri-image-verifier/verify/registry"
	"github.com/sigstore/sigstore/pkg/signature/payload"
	"golang.org/x/sync/errgroup"
)

// cosign v2's signature image: one layer per signature.
const (
	simpleSigningMediaType = "application/vnd.dev.cosign.simplesigning.v1+json"
	signatureAnnotation    = "dev.cosignproject.cosign/signature"
)

// legacy examines the signatures in the `sha256-<hex>.sig` image of cand.
func (v *Verifier) legacy(ctx context.Context, repo name.Repository, cand string, roots []*trustRoot) result {
	tag := sigTag(repo, cand)
	m, err := v.base.Reg.Manifest(ctx, tag) // a .sig tag: the signature size cap
	if registry.IsNotFound(err) {
		return result{}
	}
	if err != nil {
		return result{err: fmt.Errorf("looking up signature tag %s: %w", tag.TagStr(), err)}
	}
	man, err := v1.ParseManifest(bytes.NewReader(m.Raw))
	if err != nil {
		return result{findings: []finding{failed(rankMalformed, "signature image %s is not a valid manifest: %v", tag.TagStr(), err)}}
	}
	if err := v.base.Reg.CheckDescriptors("signature image "+tag.TagStr(), len(man.Layers)); err != nil {
		return result{err: err}
	}
	var layers []v1.Descriptor
	for _, l := range man.Layers {
		if l.MediaType == simpleSigningMediaType {
			layers = append(layers, l)
		}
	}
	var res result
	if limit := v.base.Reg.Limits().MaxSignatures; len(layers) > limit {
		res.skipped, layers = len(layers)-limit, layers[:limit]
	}
	found := make([]*finding, len(layers))
	errs := make([]error, len(layers))
	expected := expectedPayload(repo, cand)
	var g errgroup.Group
	g.SetLimit(4)
	for i, l := range layers {
		g.Go(func() error {
			found[i], errs[i] = v.checkLegacy(ctx, repo, cand, tag.TagStr(), l, expected, roots)
			return nil
		})
	}
	_ = g.Wait() // results are in found and errs
	return collect(res, found, errs)
}

// checkLegacy verifies one simple-signing layer. A nil finding with an
// error means the signature could not be fetched.
func (v *Verifier) checkLegacy(ctx context.Context, repo name.Repository, cand, tag string, l v1.Descriptor, expected []byte, roots []*trustRoot) (*finding, error) {
	b64, ok := l.Annotations[signatureAnnotation]
	if !ok {
		return ptr(failed(rankMalformed, "layer %s of %s has no %s annotation", l.Digest, tag, signatureAnnotation)), nil
	}
	sig, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return ptr(failed(rankMalformed, "signature on layer %s of %s is not base64", l.Digest, tag)), nil
	}
	body, err := expected, error(nil)
	if !isPayload(l, expected) {
		body, err = v.base.Reg.SignatureBlob(ctx, repo.Digest(l.Digest.String()))
	}
	if registry.IsNotFound(err) {
		return ptr(failed(rankMalformed, "payload %s of %s is missing from the registry", l.Digest, tag)), nil
	}
	if err != nil {
		return nil, fmt.Errorf("fetching signature payload from %s: %w", tag, err)
	}
	var signedBy []int
	var firstErr error
	for i, r := range roots {
		err := r.verifyLegacy(l.Annotations, sig, body)
		if err == nil {
			signedBy = append(signedBy, i)
		} else if firstErr == nil {
			firstErr = err
		}
	}
	if len(signedBy) == 0 {
		return ptr(failed(rankKey, "signature in tag %s does not verify: %v", tag, firstErr)), nil
	}
	// Only now, authenticated, is the payload worth reading.
	if f, bad := checkPayload(body, cand); bad {
		return &f, nil
	}
	return &finding{signedBy: signedBy}, nil
}

// expectedPayload is the simple-signing payload cosign writes, by default,
// when it signs cand in repo: the same library (sigstore's payload.Cosign)
// makes the same bytes. Nil if there is none to expect.
func expectedPayload(repo name.Repository, cand string) []byte {
	b, err := payload.Cosign{Image: repo.Digest(cand)}.MarshalJSON()
	if err != nil {
		return nil
	}
	return b
}

// isPayload says whether l, a layer of a signature image, holds exactly
// expected: then the payload need not be fetched, a round trip saved. Its
// sha256 is the layer's digest, so these are the very bytes the blob would
// hold (fetching by digest proves no more), and the signature is then
// verified over them as over any fetched payload. A payload with other
// bytes (another repository name, annotations, another digest) does not
// match and is fetched as ever.
func isPayload(l v1.Descriptor, expected []byte) bool {
	if expected == nil || l.Digest.Algorithm != "sha256" || l.Size != int64(len(expected)) {
		return false
	}
	sum := sha256.Sum256(expected)
	return hex.EncodeToString(sum[:]) == l.Digest.Hex
}

// checkPayload reads a verified simple-signing payload: it must be a cosign
// image signature naming cand.
func checkPayload(body []byte, cand string) (finding, bool) {
	var p payload.SimpleContainerImage
	if err := json.Unmarshal(body, &p); err != nil {
		return failed(rankContent, "signed payload is not a simple-signing document: %v", err), true
	}
	if p.Critical.Type != payload.CosignSignatureType {
		return failed(rankContent, "signed payload has type %q, not %q", p.Critical.Type, payload.CosignSignatureType), true
	}
	if got := p.Critical.Image.DockerManifestDigest; got != cand {
		return failed(rankDigest, "signature names digest %s, not %s", got, cand), true
	}
	return finding{}, false
}

// collect turns per-signature outcomes into a result: findings for those
// examined, the first error for those that could not be fetched.
func collect(res result, found []*finding, errs []error) result {
	for i, f := range found {
		if errs[i] != nil {
			if res.err == nil {
				res.err = errs[i]
			}
			continue
		}
		if f != nil {
			res.findings = append(res.findings, *f)
		}
	}
	return res
}

func ptr[T any](v T) *T { return &v }
