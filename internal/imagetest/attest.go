package imagetest

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/sign"
)

// Predicate types the attestation tests use.
const (
	SLSAProvenanceV1 = "https://slsa.dev/provenance/v1"
	SPDXDocument     = "https://spdx.dev/Document"
	CycloneDXBOM     = "https://cyclonedx.org/bom"
)

// DSSEMediaType is the layer media type of cosign v2's attestations.
const DSSEMediaType = "application/vnd.dsse.envelope.v1+json"

// AttestOptions make bad attestations. The zero value makes a good one.
type AttestOptions struct {
	// SubjectDigest, if set, is the digest the statement's subject names
	// instead of the digest the attestation is attached to: a genuine
	// attestation of another image, replayed.
	SubjectDigest string
	// NoAnnotations leaves out the referrer's annotations (predicate type
	// among them), as tools other than cosign may.
	NoAnnotations bool
	// AnnotatedType, if set, is the predicate type the referrer's
	// (unsigned) annotation claims instead of the signed one.
	AnnotatedType string
}

// attestStatement is an in-toto statement with a raw predicate.
type attestStatement struct {
	Type          string          `json:"_type"`
	Subject       []subject       `json:"subject"`
	PredicateType string          `json:"predicateType"`
	Predicate     json.RawMessage `json:"predicate"`
}

// AttestBundle attests digest in repo as `cosign attest --new-bundle-format`
// (cosign v3's default) does: an in-toto statement with the predicate
// (JSON) of predicateType, subject the digest, in a DSSE envelope signed
// with the signer's key, in a Sigstore bundle v0.3 attached as an OCI 1.1
// referrer whose annotation names the predicate type.
func AttestBundle(t testing.TB, repo, digest string, s *Signer, predicateType, predicate string) {
	t.Helper()
	AttestBundleWith(t, repo, digest, s, predicateType, predicate, AttestOptions{})
}

// AttestBundleWith is AttestBundle with options that make bad attestations.
func AttestBundleWith(t testing.TB, repo, digest string, s *Signer, predicateType, predicate string, opts AttestOptions) {
	t.Helper()
	raw := AttestationJSON(t, repo, digest, s, predicateType, predicate, opts)
	var ann map[string]string
	if !opts.NoAnnotations {
		pt := predicateType
		if opts.AnnotatedType != "" {
			pt = opts.AnnotatedType
		}
		ann = map[string]string{
			"org.opencontainers.image.created":  time.Now().UTC().Format(time.RFC3339),
			"dev.sigstore.bundle.content":       "dsse-envelope",
			"dev.sigstore.bundle.predicateType": pt,
		}
	}
	AttachReferrer(t, repo, digest, BundleMediaType, raw, ann)
}

// AttestationJSON makes the Sigstore bundle AttestBundleWith attaches,
// without pushing it.
func AttestationJSON(t testing.TB, repo, digest string, s *Signer, predicateType, predicate string, opts AttestOptions) []byte {
	t.Helper()
	r := parseRepo(t, repo)
	named := digest
	if opts.SubjectDigest != "" {
		named = opts.SubjectDigest
	}
	data := statementJSON(t, r.Name(), named, InTotoStatementType, predicateType, predicate)
	pb, err := sign.Bundle(&sign.DSSEData{Data: data, PayloadType: InTotoPayloadType}, s.keypair(t), sign.BundleOptions{})
	if err != nil {
		t.Fatalf("imagetest: sign attestation: %v", err)
	}
	b, err := bundle.NewBundle(pb)
	if err != nil {
		t.Fatalf("imagetest: bundle: %v", err)
	}
	raw, err := b.MarshalJSON()
	if err != nil {
		t.Fatalf("imagetest: bundle JSON: %v", err)
	}
	return raw
}

// statementJSON is an in-toto statement of the given type naming repo and
// digest, with predicate (JSON) of predicateType.
func statementJSON(t testing.TB, repo, digest, statementType, predicateType, predicate string) []byte {
	t.Helper()
	algo, hex, ok := strings.Cut(digest, ":")
	if !ok {
		t.Fatalf("imagetest: %q is not a digest", digest)
	}
	if !json.Valid([]byte(predicate)) {
		t.Fatalf("imagetest: predicate is not JSON: %s", predicate)
	}
	data, err := json.Marshal(attestStatement{
		Type:          statementType,
		Subject:       []subject{{Name: repo, Digest: map[string]string{algo: hex}}},
		PredicateType: predicateType,
		Predicate:     json.RawMessage(predicate),
	})
	if err != nil {
		t.Fatalf("imagetest: statement: %v", err)
	}
	return data
}

// AttestLegacy attests digest in repo as cosign v2's `cosign attest --key`
// does: an in-toto v0.1 statement in a DSSE envelope signed with the key
// (SHA-256, as cosign v2 signs), appended as a layer to the image at tag
// sha256-<hex>.att, the predicate type in the layer's annotation. Only
// SubjectDigest of opts applies.
func AttestLegacy(t testing.TB, repo, digest string, s *Signer, predicateType, predicate string, opts AttestOptions) {
	t.Helper()
	r := parseRepo(t, repo)
	named := digest
	if opts.SubjectDigest != "" {
		named = opts.SubjectDigest
	}
	payload := statementJSON(t, r.Name(), named, "https://in-toto.io/Statement/v0.1", predicateType, predicate)
	pae := fmt.Sprintf("DSSEv1 %d %s %d %s", len(InTotoPayloadType), InTotoPayloadType, len(payload), payload)
	env, err := json.Marshal(map[string]any{
		"payloadType": InTotoPayloadType,
		"payload":     payload, // []byte: base64 in JSON
		"signatures":  []map[string]any{{"keyid": "", "sig": s.signLegacy(t, []byte(pae))}},
	})
	if err != nil {
		t.Fatalf("imagetest: envelope: %v", err)
	}
	tag := r.Tag(strings.Replace(digest, ":", "-", 1) + ".att")
	img, err := mutate.Append(sigImage(t, tag), mutate.Addendum{
		Layer:       static.NewLayer(env, DSSEMediaType),
		Annotations: map[string]string{"predicateType": predicateType, SignatureAnnotation: ""},
	})
	if err != nil {
		t.Fatalf("imagetest: append attestation: %v", err)
	}
	if err := remote.Write(tag, img); err != nil {
		t.Fatalf("imagetest: push %s: %v", tag, err)
	}
}
