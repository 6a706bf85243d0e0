package cosign

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/nri-image-verifier/nri-image-verifier/verify/registry"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	"github.com/sigstore/sigstore-go/pkg/bundle"
)

// cosign v2's attestations (`cosign attest` without the new bundle
// format): an image at tag sha256-<hex>.att with one layer per
// attestation, each a DSSE envelope, the predicate type in the layer's
// annotation.
const (
	dsseMediaType             = "application/vnd.dsse.envelope.v1+json"
	legacyPredicateAnnotation = "predicateType"
)

// attTag is the legacy attestation tag of digest: sha256-<hex>.att.
func attTag(repo name.Repository, digest string) name.Tag {
	return repo.Tag(strings.Replace(digest, ":", "-", 1) + ".att")
}

// legacyCandidate examines the attestations in cand's .att image. They
// are checked for key roots only: the envelope is verified with the root's
// key, as a bundle (cosign v2 keyless attestations carry their certificate
// in annotations, which this does not read, so they never count).
func (s *attestSearch) legacyCandidate(ctx context.Context, cand string, want []byte) {
	tag := attTag(s.repo, cand)
	m, err := s.v.base.Reg.Manifest(ctx, tag)
	if registry.IsNotFound(err) {
		return
	}
	if err != nil {
		s.fetchFailed(fmt.Errorf("looking up attestation tag %s: %w", tag.TagStr(), err))
		return
	}
	man, err := v1.ParseManifest(bytes.NewReader(m.Raw))
	if err != nil {
		return // no attestation can be read from it
	}
	if err := s.v.base.Reg.CheckDescriptors("attestation image "+tag.TagStr(), len(man.Layers)); err != nil {
		s.fetchFailed(err)
		return
	}
	var todo []v1.Descriptor
	for _, l := range man.Layers {
		if l.MediaType != dsseMediaType {
			continue
		}
		// As for referrers: an unsigned claim, trusted only to skip.
		if pt, ok := l.Annotations[legacyPredicateAnnotation]; ok && !s.wanted(pt) {
			continue
		}
		todo = append(todo, l)
	}
	s.each(ctx, cand, todo, "layer", legacyPredicateAnnotation, func(l v1.Descriptor) (*examined, error) {
		raw, err := s.v.base.Reg.Blob(ctx, s.repo.Digest(l.Digest.String()))
		if registry.IsNotFound(err) {
			return unusable(attRankContent, "layer %s of %s is missing from the registry", l.Digest, tag.TagStr()), nil
		}
		if err != nil {
			return nil, fmt.Errorf("fetching attestation layer %s of %s: %w", l.Digest, tag.TagStr(), err)
		}
		b, err := envelopeBundle(raw)
		if err != nil {
			return unusable(attRankContent, "layer %s of %s: %v", l.Digest, tag.TagStr(), err), nil
		}
		return s.verified(b, cand, "layer "+l.Digest.String(), want), nil
	})
}

// envelopeBundle wraps a DSSE envelope in a key-verified Sigstore bundle
// (no certificate, no transparency log entry), so that it goes through
// trustRoot.verify like any other.
func envelopeBundle(raw []byte) (*bundle.Bundle, error) {
	var env struct {
		PayloadType string `json:"payloadType"`
		Payload     []byte `json:"payload"` // base64 in JSON
		Signatures  []struct {
			KeyID string `json:"keyid"`
			Sig   []byte `json:"sig"` // base64 in JSON
		} `json:"signatures"`
	}
	if err := json.Unmarshal(raw, &env); err != nil {
		return nil, fmt.Errorf("not a DSSE envelope: %w", err)
	}
	if len(env.Signatures) == 0 {
		return nil, errors.New("DSSE envelope has no signature")
	}
	sigs := make([]*protodsse.Signature, len(env.Signatures))
	for i, sg := range env.Signatures {
		sigs[i] = &protodsse.Signature{Sig: sg.Sig, Keyid: sg.KeyID}
	}
	b, err := bundle.NewBundle(&protobundle.Bundle{
		MediaType: bundleMediaType,
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content: &protobundle.VerificationMaterial_PublicKey{PublicKey: &protocommon.PublicKeyIdentifier{}},
		},
		Content: &protobundle.Bundle_DsseEnvelope{DsseEnvelope: &protodsse.Envelope{
			Payload:     env.Payload,
			PayloadType: env.PayloadType,
			Signatures:  sigs,
		}},
	})
	if err != nil {
		return nil, fmt.Errorf("DSSE envelope: %w", err)
	}
	return b, nil
}
