package cosign

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"

	"github.com/sigstore/sigstore/pkg/signature"
)

// Bundles made with a P-384 key verify whether the signer hashed with the
// curve's SHA-384 (sigstore-go, cosign v3) or with SHA-256 (older clients);
// nothing else does.
func TestBundleKeyVerifierHashes(t *testing.T) {
	priv, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	v, err := bundleKeyVerifier(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("DSSEv1 28 application/vnd.in-toto+json 2 {}")
	for hash, want := range map[crypto.Hash]bool{crypto.SHA384: true, crypto.SHA256: true, crypto.SHA512: false} {
		s, err := signature.LoadSigner(priv, hash)
		if err != nil {
			t.Fatal(err)
		}
		sig, err := s.SignMessage(bytes.NewReader(msg))
		if err != nil {
			t.Fatal(err)
		}
		err = v.VerifySignature(bytes.NewReader(sig), bytes.NewReader(msg))
		if (err == nil) != want {
			t.Errorf("%v: verified=%v, want %v (%v)", hash, err == nil, want, err)
		}
	}
}
