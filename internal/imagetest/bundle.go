package imagetest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/sign"
)

// statement is an in-toto v1 statement, written as cosign v3's sign does.
type statement struct {
	Type          string         `json:"_type"`
	Subject       []subject      `json:"subject"`
	PredicateType string         `json:"predicateType"`
	Predicate     map[string]any `json:"predicate"`
}

type subject struct {
	Name   string            `json:"name,omitempty"`
	Digest map[string]string `json:"digest"`
}

// SignBundle signs digest in repo as cosign v3 does by default: a DSSE
// envelope over an in-toto statement (predicate type
// https://sigstore.dev/cosign/sign/v1, subject the digest) in a Sigstore
// bundle v0.3 made by sigstore-go's sign.Bundle with the signer's key (no
// transparency log, no timestamp), attached as an OCI 1.1 referrer of the
// image: artifactType the bundle media type, empty config, one layer.
func SignBundle(t testing.TB, repo, digest string, s *Signer, opts SignOptions) {
	t.Helper()
	raw := BundleJSON(t, repo, digest, s, opts)
	pt := CosignSignPredicateType
	if opts.PredicateType != "" {
		pt = opts.PredicateType
	}
	var ann map[string]string
	if !opts.NoAnnotations {
		ann = map[string]string{
			"org.opencontainers.image.created":  time.Now().UTC().Format(time.RFC3339),
			"dev.sigstore.bundle.content":       "dsse-envelope",
			"dev.sigstore.bundle.predicateType": pt,
		}
	}
	AttachReferrer(t, repo, digest, BundleMediaType, raw, ann)
}

// AttachReferrer pushes an artifact with one layer (content, of media type
// artifactType) as an OCI 1.1 referrer of digest, laid out as cosign's
// WriteReferrer does: an empty config and the artifactType on the manifest.
func AttachReferrer(t testing.TB, repo, digest, artifactType string, content []byte, annotations map[string]string) {
	t.Helper()
	r := parseRepo(t, repo)
	subj, err := remote.Head(r.Digest(digest))
	if err != nil {
		t.Fatalf("imagetest: head %s@%s: %v", repo, digest, err)
	}
	// cosign uploads "{}" as the config blob and names it the empty type.
	cfg := static.NewLayer([]byte("{}"), types.OCIConfigJSON)
	layer := static.NewLayer(content, types.MediaType(artifactType))
	cfgDesc := describeBlob(t, r, cfg)
	layerDesc := describeBlob(t, r, layer)
	cfgDesc.MediaType = "application/vnd.oci.empty.v1+json"
	cfgDesc.ArtifactType = artifactType
	layerDesc.Annotations = map[string]string{
		"org.opencontainers.image.title": fmt.Sprintf("%s-%s.sigstore.json", layerDesc.Digest.Algorithm, layerDesc.Digest.Hex),
	}
	putReferrer(t, r, v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  artifactType,
		Config:        cfgDesc,
		Layers:        []v1.Descriptor{layerDesc},
		Subject:       &v1.Descriptor{MediaType: subj.MediaType, Digest: subj.Digest, Size: subj.Size},
		Annotations:   annotations,
	})
}

func describeBlob(t testing.TB, r name.Repository, l v1.Layer) v1.Descriptor {
	t.Helper()
	if err := remote.WriteLayer(r, l); err != nil {
		t.Fatalf("imagetest: upload blob: %v", err)
	}
	d, err := l.Digest()
	if err != nil {
		t.Fatalf("imagetest: blob digest: %v", err)
	}
	size, err := l.Size()
	if err != nil {
		t.Fatalf("imagetest: blob size: %v", err)
	}
	mt, err := l.MediaType()
	if err != nil {
		t.Fatalf("imagetest: blob media type: %v", err)
	}
	return v1.Descriptor{MediaType: mt, Digest: d, Size: size}
}

func putReferrer(t testing.TB, r name.Repository, m v1.Manifest) {
	t.Helper()
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatalf("imagetest: referrer manifest: %v", err)
	}
	h, _, err := v1.SHA256(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("imagetest: referrer digest: %v", err)
	}
	if err := remote.Put(r.Digest(h.String()), rawManifest{raw: raw, mt: types.OCIManifestSchema1}); err != nil {
		t.Fatalf("imagetest: push referrer: %v", err)
	}
}

type rawManifest struct {
	raw []byte
	mt  types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.raw, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mt, nil }

// BundleJSON makes the Sigstore bundle SignBundle attaches, without pushing
// it: the signed in-toto statement names repo and digest.
func BundleJSON(t testing.TB, repo, digest string, s *Signer, opts SignOptions) []byte {
	t.Helper()
	r := parseRepo(t, repo)
	named := digest
	if opts.PayloadDigest != "" {
		named = opts.PayloadDigest
	}
	algo, hex, ok := strings.Cut(named, ":")
	if !ok {
		t.Fatalf("imagetest: %q is not a digest", named)
	}
	pt := CosignSignPredicateType
	if opts.PredicateType != "" {
		pt = opts.PredicateType
	}
	data, err := json.Marshal(statement{
		Type:          InTotoStatementType,
		Subject:       []subject{{Name: r.Name(), Digest: map[string]string{algo: hex}}},
		PredicateType: pt,
		Predicate:     map[string]any{},
	})
	if err != nil {
		t.Fatalf("imagetest: statement: %v", err)
	}
	pb, err := sign.Bundle(&sign.DSSEData{Data: data, PayloadType: InTotoPayloadType}, s.keypair(t), sign.BundleOptions{})
	if err != nil {
		t.Fatalf("imagetest: sign bundle: %v", err)
	}
	if opts.Tamper {
		env := pb.GetDsseEnvelope()
		env.Payload = bytes.Replace(env.Payload, []byte(r.Name()), []byte(r.Name()+"-tampered"), 1)
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
