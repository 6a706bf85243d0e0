package cosign

import (
	"bytes"
	"crypto"
	"testing"

	"github.com/nri-image-verifier/nri-image-verifier/internal/sigstoretest"
	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/sigstore/sigstore/pkg/signature"
)

// FuzzKeylessLegacy: whatever a registry puts in a legacy signature's
// certificate, chain and Rekor bundle annotations, reading and verifying
// them never panics, and never verifies a payload nobody signed.
func FuzzKeylessLegacy(f *testing.F) {
	ss := sigstoretest.New(f)
	leaf := ss.Issue(f, ciIdentity, sigstoretest.CertOptions{})
	signed := []byte(`{"critical":{"type":"cosign container image signature"}}`)
	sv, err := signature.LoadECDSASignerVerifier(leaf.Key, crypto.SHA256)
	if err != nil {
		f.Fatal(err)
	}
	sig, err := sv.SignMessage(bytes.NewReader(signed))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(leaf.CertPEM(f), ss.ChainPEM(f), ss.HashedRekord(f, leaf, signed, sig, sigstoretest.EntryOptions{}).CosignBundle(f), sig)
	f.Add("", "", `{"SignedEntryTimestamp":"AA==","Payload":{"body":"e30=","integratedTime":1,"logIndex":0,"logID":"00"}}`, []byte{})
	f.Add(leaf.CertPEM(f), "", `{"Payload":{"body":"eyJraW5kIjoiZHNzZSIsImFwaVZlcnNpb24iOiIwLjAuMSIsInNwZWMiOnt9fQ=="}}`, sig)

	p := policy.Policy{
		Validators: []policy.Validator{{Name: "v", Type: policy.TypeCosign, Host: inlineHost(f, ss), TrustRoots: []policy.TrustRoot{ciRoot}}},
		Rules:      []policy.Rule{{Pattern: "*", Validator: "v", With: policy.With{TrustRoot: "ci"}}},
	}
	if err := checkPolicy(&p); err != nil {
		f.Fatal(err)
	}
	root, err := compiled(f, &p.Validators[0]).root(p.Validators[0].TrustRoots[0])
	if err != nil {
		f.Fatal(err)
	}
	off := false
	lax := root.forRule(policy.With{VerifyInTransparencyLog: &off, VerifySCT: &off})
	f.Fuzz(func(t *testing.T, cert, chain, rekor string, s []byte) {
		ann := map[string]string{certificateAnnotation: cert, chainAnnotation: chain, rekorBundleAnnotation: rekor}
		for _, r := range []*trustRoot{root, lax} {
			_ = r.verifyLegacy(ann, s, signed)
			if err := r.verifyLegacy(ann, s, []byte(`{"critical":{"type":"another"}}`)); err == nil {
				t.Fatalf("verified a payload nobody signed: %q %q %q", cert, chain, rekor)
			}
		}
	})
}
