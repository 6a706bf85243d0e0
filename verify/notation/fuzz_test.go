package notation

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"math/big"
	"testing"
	"time"

	notationgo "github.com/notaryproject/notation-go"
	"github.com/notaryproject/notation-go/signer"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
	"github.com/nri-image-verifier/nri-image-verifier/policy"
)

// Whatever envelope a registry serves, notation's verifier (behind
// verifyEnvelope) neither panics nor accepts a signature that names
// another manifest. Seeds are genuine JWS and COSE envelopes.
func FuzzEnvelope(f *testing.F) {
	target := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("image"), Size: 1234}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{Country: []string{"US"}, Province: []string{"WA"}, Organization: []string{"Example"}, CommonName: "Root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	ca := mustCert(f, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	leaf := mustCert(f, &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: release, NotBefore: caTmpl.NotBefore, NotAfter: caTmpl.NotAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
	}, ca, &leafKey.PublicKey, caKey)
	gs, err := signer.NewGenericSigner(leafKey, []*x509.Certificate{leaf, ca})
	if err != nil {
		f.Fatal(err)
	}
	for _, mt := range []string{imagetest.NotationJWS, imagetest.NotationCOSE} {
		env, _, err := gs.Sign(context.Background(), target, notationgo.SignerSignOptions{SignatureMediaType: mt})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(env, mt == imagetest.NotationCOSE)
	}
	r, _, err := newRoot(0, policy.TrustRoot{Name: "default", Cert: imagetest.NotationCertPEM(ca)})
	if err != nil {
		f.Fatal(err)
	}
	nv, err := newNotationVerifier([]*root{r}, with(LevelAudit, "*"))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, env []byte, useCOSE bool) {
		mt := imagetest.NotationJWS
		if useCOSE {
			mt = imagetest.NotationCOSE
		}
		o, err := verifyEnvelope(context.Background(), nv, target, env, notationgo.VerifierVerifyOptions{
			ArtifactReference: "reg.example/app@" + target.Digest.String(), SignatureMediaType: mt,
		})
		if err != nil {
			return
		}
		var p struct {
			TargetArtifact ocispec.Descriptor `json:"targetArtifact"`
		}
		if jerr := json.Unmarshal(o.EnvelopeContent.Payload.Content, &p); jerr != nil ||
			p.TargetArtifact.Digest != target.Digest || p.TargetArtifact.Size != target.Size || p.TargetArtifact.MediaType != target.MediaType {
			t.Fatalf("accepted an envelope naming %+v (%v)", p.TargetArtifact, jerr)
		}
	})
}

func mustCert(f *testing.F, tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, key *ecdsa.PrivateKey) *x509.Certificate {
	f.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		f.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		f.Fatal(err)
	}
	return c
}
