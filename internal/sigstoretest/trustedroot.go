package sigstoretest

import (
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	sgroot "github.com/sigstore/sigstore-go/pkg/root"
)

// TrustedRoot is the deployment as sigstore-go's trusted material: the
// Fulcio CA, the Rekor log and the CT log.
func (s *Sigstore) TrustedRoot(t testing.TB) *sgroot.TrustedRoot {
	t.Helper()
	since := s.Root.NotBefore
	rekorID := logID(t, s.rekorKey.Public())
	ctID := logID(t, s.ctKey.Public())
	tr, err := sgroot.NewTrustedRoot(sgroot.TrustedRootMediaType01,
		[]sgroot.CertificateAuthority{&sgroot.FulcioCertificateAuthority{
			Root: s.Root, Intermediates: []*x509.Certificate{s.Intermediate}, ValidityPeriodStart: since, URI: "https://fulcio.sigstoretest.local",
		}},
		map[string]*sgroot.TransparencyLog{hex.EncodeToString(ctID[:]): {
			BaseURL: "https://ctlog.sigstoretest.local", ID: ctID[:], ValidityPeriodStart: since,
			HashFunc: crypto.SHA256, PublicKey: s.ctKey.Public(), SignatureHashFunc: crypto.SHA256,
		}},
		nil,
		map[string]*sgroot.TransparencyLog{hex.EncodeToString(rekorID[:]): {
			BaseURL: "https://" + rekorOrigin, ID: rekorID[:], ValidityPeriodStart: since,
			HashFunc: crypto.SHA256, PublicKey: s.rekorKey.Public(), SignatureHashFunc: crypto.SHA256,
		}})
	if err != nil {
		t.Fatalf("sigstoretest: trusted root: %v", err)
	}
	return tr
}

// WriteTrustedRoot writes the deployment's trusted_root.json into a fresh
// test directory and returns its absolute path.
func (s *Sigstore) WriteTrustedRoot(t testing.TB) string {
	t.Helper()
	b, err := s.TrustedRoot(t).MarshalJSON()
	if err != nil {
		t.Fatalf("sigstoretest: trusted root JSON: %v", err)
	}
	path := filepath.Join(t.TempDir(), "trusted_root.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatalf("sigstoretest: write trusted root: %v", err)
	}
	return path
}
