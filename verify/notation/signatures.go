package notation

import (
	"bytes"
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/notaryproject/notation-core-go/signature/cose"
	"github.com/notaryproject/notation-core-go/signature/jws"
	notationgo "github.com/notaryproject/notation-go"
	"github.com/nri-image-verifier/nri-image-verifier/verify/registry"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
)

// ArtifactType is the artifact type of notation's signature manifests.
const ArtifactType = "application/vnd.cncf.notary.signature"

// check is what the signature lookups of one verification share.
type check struct {
	v     *Verifier
	nv    notationgo.Verifier
	repo  name.Repository
	roots []*root
	ids   []string // the rule's trusted identities, for reasons
}

// signatures examines the notation signatures attached to cand.
func (c *check) signatures(ctx context.Context, cand string) result {
	// notation signs a descriptor: the digest, media type and size of the
	// manifest. Fetched by digest, the content is checked against it, so
	// its media type and size are the manifest's own.
	m, err := c.v.base.Reg.Manifest(ctx, c.repo.Digest(cand))
	if registry.IsNotFound(err) {
		return result{absent: []string{cand}}
	}
	if err != nil {
		return result{err: fmt.Errorf("fetching the manifest of %s: %w", cand, err)}
	}
	desc := ocispec.Descriptor{MediaType: string(m.MediaType), Digest: digest.Digest(cand), Size: int64(len(m.Raw))}

	descs, err := c.v.base.Reg.Referrers(ctx, c.repo.Digest(cand), ArtifactType)
	if err != nil {
		return result{err: fmt.Errorf("looking up referrers of %s: %w", cand, err)}
	}
	var res result
	if limit := c.v.base.Reg.Limits().MaxSignatures; len(descs) > limit {
		res.skipped, descs = len(descs)-limit, descs[:limit]
	}
	found := make([]*finding, len(descs))
	errs := make([]error, len(descs))
	var g errgroup.Group
	g.SetLimit(4)
	for i, d := range descs {
		g.Go(func() error {
			found[i], errs[i] = c.signature(ctx, cand, desc, d)
			return nil
		})
	}
	_ = g.Wait() // results are in found and errs
	for i := range descs {
		if errs[i] != nil && res.err == nil {
			res.err = errs[i]
		}
		if found[i] != nil {
			res.findings = append(res.findings, *found[i])
		}
	}
	return res
}

// signature fetches one referrer and has notation verify it. Nil, nil: it
// is not a notation signature after all.
func (c *check) signature(ctx context.Context, cand string, target ocispec.Descriptor, d v1.Descriptor) (*finding, error) {
	m, err := c.v.base.Reg.SignatureManifest(ctx, c.repo.Digest(d.Digest.String()))
	if registry.IsNotFound(err) {
		return nil, nil // deleted since listed
	}
	if err != nil {
		return nil, fmt.Errorf("fetching referrer %s of %s: %w", d.Digest, cand, err)
	}
	man, err := v1.ParseManifest(bytes.NewReader(m.Raw))
	if err != nil {
		if d.ArtifactType == ArtifactType {
			return failed(rankMalformed, "signature manifest %s is not a valid manifest: %v", d.Digest, err), nil
		}
		return nil, nil
	}
	// notation writes the artifact type as the config's media type;
	// OCI 1.1 clients may write artifactType.
	at := man.ArtifactType
	if at == "" {
		at = string(man.Config.MediaType)
	}
	if at != ArtifactType {
		return nil, nil // the registry listed it loosely (see registry.Referrers)
	}
	if len(man.Layers) != 1 {
		return failed(rankMalformed, "signature manifest %s has %d layers, want exactly one signature envelope", d.Digest, len(man.Layers)), nil
	}
	layer := man.Layers[0]
	switch mt := string(layer.MediaType); mt {
	case jws.MediaTypeEnvelope, cose.MediaTypeEnvelope:
	default:
		return failed(rankMalformed, "signature manifest %s holds an envelope of media type %q, want %q or %q", d.Digest, mt, jws.MediaTypeEnvelope, cose.MediaTypeEnvelope), nil
	}
	env, err := c.v.base.Reg.SignatureBlob(ctx, c.repo.Digest(layer.Digest.String()))
	if registry.IsNotFound(err) {
		return failed(rankMalformed, "signature envelope %s of %s is missing from the registry", layer.Digest, d.Digest), nil
	}
	if err != nil {
		return nil, fmt.Errorf("fetching signature envelope of referrer %s of %s: %w", d.Digest, cand, err)
	}
	outcome, err := verifyEnvelope(ctx, c.nv, target, env, notationgo.VerifierVerifyOptions{
		ArtifactReference:  c.repo.Name() + "@" + cand,
		SignatureMediaType: string(layer.MediaType),
	})
	return c.judge(d.Digest.String(), cand, outcome, err), nil
}

// verifyEnvelope is notation's Verify. A panic in there on a hostile
// envelope must not take the node's gate down with it: it becomes an
// error, and so a signature that does not count.
func verifyEnvelope(ctx context.Context, nv notationgo.Verifier, target ocispec.Descriptor, env []byte, opts notationgo.VerifierVerifyOptions) (o *notationgo.VerificationOutcome, err error) {
	defer func() {
		if r := recover(); r != nil {
			o, err = nil, fmt.Errorf("notation's verifier failed on the envelope: %v", r)
		}
	}()
	return nv.Verify(ctx, target, env, opts)
}
