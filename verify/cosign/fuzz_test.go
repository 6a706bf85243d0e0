package cosign

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/sigstore/sigstore-go/pkg/bundle"

	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
)

const fuzzDigest = "sha256:0000000000000000000000000000000000000000000000000000000000000001"

// FuzzPayload: the simple-signing payload parser never panics, and never
// accepts a payload that does not name the digest as a cosign signature.
func FuzzPayload(f *testing.F) {
	f.Add([]byte(`{"critical":{"identity":{"docker-reference":"r/a"},"image":{"docker-manifest-digest":"` + fuzzDigest + `"},"type":"cosign container image signature"},"optional":null}`))
	f.Add([]byte(`{"critical":{"image":{"docker-manifest-digest":"sha256:2"},"type":"cosign container image signature"}}`))
	f.Add([]byte(`{"critical":null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		_, bad := checkPayload(body, fuzzDigest)
		// encoding/json matches keys case-insensitively, as cosign's own
		// parser does; the signer signed whatever case it used.
		lower := strings.ToLower(string(body))
		if !bad && (!strings.Contains(lower, "docker-manifest-digest") || !strings.Contains(lower, "0001")) {
			t.Fatalf("accepted a payload that does not name the digest: %s", body)
		}
	})
}

// FuzzBundle: bundle parsing and key verification never panic, and a
// mutated bundle never verifies for a digest it was not signed for.
func FuzzBundle(f *testing.F) {
	signer := imagetest.NewSigner(f, imagetest.ECDSAP256)
	good := imagetest.BundleJSON(f, "127.0.0.1:5000/app", fuzzDigest, signer, imagetest.SignOptions{})
	f.Add(good)
	f.Add(imagetest.BundleJSON(f, "127.0.0.1:5000/app", fuzzDigest, signer, imagetest.SignOptions{Tamper: true}))
	f.Add([]byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}`))
	root, err := newKeyRoot("default", signer.PublicKey())
	if err != nil {
		f.Fatal(err)
	}
	want, _ := hex.DecodeString(strings.TrimPrefix(fuzzDigest, "sha256:"))
	other := sha256.Sum256([]byte("another image"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var b bundle.Bundle
		if err := b.UnmarshalJSON(raw); err != nil || b.GetDsseEnvelope() == nil {
			return
		}
		root.verifyBundle(&b, fuzzDigest, want, "fuzz")
		if _, ok := root.verifyBundle(&b, "sha256:"+hex.EncodeToString(other[:]), other[:], "fuzz"); ok {
			t.Fatalf("bundle verified for a digest nobody signed:\n%s", raw)
		}
	})
}
