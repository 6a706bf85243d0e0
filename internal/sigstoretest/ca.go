// Package sigstoretest is a local Sigstore for tests, in process and
// offline: a Fulcio-like certificate authority (root and intermediate)
// issuing short-lived code-signing certificates with the Fulcio OIDC
// extensions and an SCT embedded by a CT log key (the precertificate
// flow), and a Rekor-like log signing entry timestamps (SETs) and
// checkpoints for hashedrekord and DSSE entries. Its public material is
// given as the inline PEM a policy's host block holds, or as a Sigstore
// trusted_root.json.
//
// Every helper takes a testing.TB and fails it on error.
package sigstoretest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"

	ct "github.com/google/certificate-transparency-go"
	cttls "github.com/google/certificate-transparency-go/tls"
	ctx509 "github.com/google/certificate-transparency-go/x509"
	ctx509util "github.com/google/certificate-transparency-go/x509util"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

// Fulcio's certificate extensions: the OIDC issuer, raw (deprecated) and
// as a DER UTF8String (current). Fulcio writes both.
var (
	oidIssuerV1 = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 1}
	oidIssuerV2 = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 8}
)

// CertValidity is how long a leaf certificate is valid, as Fulcio's.
const CertValidity = 10 * time.Minute

// Sigstore is one local Sigstore deployment.
type Sigstore struct {
	Root, Intermediate *x509.Certificate
	rootKey, interKey  *ecdsa.PrivateKey
	rekorKey, ctKey    *ecdsa.PrivateKey
}

// New makes a Sigstore with fresh keys: a root CA valid from a day ago for
// a year, an intermediate under it, a Rekor key and a CT log key.
func New(t testing.TB) *Sigstore {
	t.Helper()
	s := &Sigstore{rootKey: newKey(t), interKey: newKey(t), rekorKey: newKey(t), ctKey: newKey(t)}
	now := time.Now()
	s.Root = createCert(t, &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: "sigstoretest root", Organization: []string{"sigstoretest"}},
		NotBefore:             now.Add(-24 * time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}, nil, s.rootKey, s.rootKey)
	s.Intermediate = createCert(t, &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: "sigstoretest intermediate", Organization: []string{"sigstoretest"}},
		NotBefore:             now.Add(-24 * time.Hour),
		NotAfter:              now.Add(180 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}, s.Root, s.interKey, s.rootKey)
	return s
}

// NewKey makes an ECDSA P-256 key, e.g. to forge a SET or an SCT with.
func NewKey(t testing.TB) *ecdsa.PrivateKey { t.Helper(); return newKey(t) }

// Identity is who a certificate is issued to: the OIDC issuer and the
// subject, an e-mail or, if it has a scheme, a URI (a CI workflow).
type Identity struct {
	Issuer, Subject string
}

// CertOptions vary a leaf certificate. The zero value is a good one, valid
// from a minute ago.
type CertOptions struct {
	// NotBefore is when the certificate starts being valid (for
	// CertValidity); zero means a minute ago.
	NotBefore time.Time
	// NoSCT leaves the SCT out.
	NoSCT bool
	// SCTKey, if set, signs the SCT in place of the CT log's key, which
	// the SCT still names: a forged SCT.
	SCTKey *ecdsa.PrivateKey
}

// Leaf is an issued certificate and its private key.
type Leaf struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// Issue issues a code-signing certificate to id, as Fulcio does.
func (s *Sigstore) Issue(t testing.TB, id Identity, o CertOptions) *Leaf {
	t.Helper()
	key := newKey(t)
	nb := o.NotBefore
	if nb.IsZero() {
		nb = time.Now().Add(-time.Minute)
	}
	issuerV2, err := asn1.MarshalWithParams(id.Issuer, "utf8")
	if err != nil {
		t.Fatalf("sigstoretest: issuer extension: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		NotBefore:    nb,
		NotAfter:     nb.Add(CertValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		ExtraExtensions: []pkix.Extension{
			{Id: oidIssuerV1, Value: []byte(id.Issuer)},
			{Id: oidIssuerV2, Value: issuerV2},
		},
	}
	if strings.Contains(id.Subject, "://") {
		u, err := url.Parse(id.Subject)
		if err != nil {
			t.Fatalf("sigstoretest: subject %q: %v", id.Subject, err)
		}
		tmpl.URIs = []*url.URL{u}
	} else {
		tmpl.EmailAddresses = []string{id.Subject}
	}
	if o.NoSCT {
		return &Leaf{Cert: createCert(t, tmpl, s.Intermediate, key, s.interKey), Key: key}
	}
	// The precertificate flow: the CT log signs the certificate's TBS
	// without the SCT list, and the CA then issues the same TBS with the
	// SCT list added (RFC 6962 3.1; the poison extension is left out, as
	// the verifier removes it anyway).
	pre := createCert(t, tmpl, s.Intermediate, key, s.interKey)
	sctKey := s.ctKey
	if o.SCTKey != nil {
		sctKey = o.SCTKey
	}
	sct := s.signSCT(t, pre, sctKey)
	list, err := ctx509util.MarshalSCTsIntoSCTList([]*ct.SignedCertificateTimestamp{sct})
	if err != nil {
		t.Fatalf("sigstoretest: SCT list: %v", err)
	}
	listBytes, err := cttls.Marshal(*list)
	if err != nil {
		t.Fatalf("sigstoretest: SCT list: %v", err)
	}
	ext, err := asn1.Marshal(listBytes)
	if err != nil {
		t.Fatalf("sigstoretest: SCT extension: %v", err)
	}
	tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkix.Extension{Id: asn1.ObjectIdentifier(ctx509.OIDExtensionCTSCT), Value: ext})
	return &Leaf{Cert: createCert(t, tmpl, s.Intermediate, key, s.interKey), Key: key}
}

// signSCT makes the CT log's SCT for pre, signed with key but naming the
// CT log.
func (s *Sigstore) signSCT(t testing.TB, pre *x509.Certificate, key *ecdsa.PrivateKey) *ct.SignedCertificateTimestamp {
	t.Helper()
	sct := ct.SignedCertificateTimestamp{
		SCTVersion: ct.V1,
		LogID:      ct.LogID{KeyID: logID(t, s.ctKey.Public())},
		Timestamp:  uint64(time.Now().UnixMilli()), // #nosec G115 -- a current time is positive.
	}
	entry := ct.LogEntry{Leaf: ct.MerkleTreeLeaf{
		Version:  ct.V1,
		LeafType: ct.TimestampedEntryLeafType,
		TimestampedEntry: &ct.TimestampedEntry{
			Timestamp: sct.Timestamp,
			EntryType: ct.PrecertLogEntryType,
			PrecertEntry: &ct.PreCert{
				IssuerKeyHash:  sha256.Sum256(s.Intermediate.RawSubjectPublicKeyInfo),
				TBSCertificate: pre.RawTBSCertificate,
			},
		},
	}}
	data, err := ct.SerializeSCTSignatureInput(sct, entry)
	if err != nil {
		t.Fatalf("sigstoretest: SCT input: %v", err)
	}
	sum := sha256.Sum256(data)
	sig, err := key.Sign(rand.Reader, sum[:], crypto.SHA256)
	if err != nil {
		t.Fatalf("sigstoretest: sign SCT: %v", err)
	}
	sct.Signature = ct.DigitallySigned{
		Algorithm: cttls.SignatureAndHashAlgorithm{Hash: cttls.SHA256, Signature: cttls.ECDSA},
		Signature: sig,
	}
	return &sct
}

// CertPEM is the leaf as PEM, as cosign's certificate annotation holds it.
func (l *Leaf) CertPEM(t testing.TB) string {
	t.Helper()
	return pemCert(t, l.Cert)
}

// ChainPEM is the intermediate then the root, as cosign's chain
// annotation and Connaisseur's host.fulcioCert hold them.
func (s *Sigstore) ChainPEM(t testing.TB) string {
	t.Helper()
	return pemCert(t, s.Intermediate) + pemCert(t, s.Root)
}

// RekorPublicKeyPEM is the Rekor key, as host.rekorPubkey holds it.
func (s *Sigstore) RekorPublicKeyPEM(t testing.TB) string {
	t.Helper()
	return pemKey(t, s.rekorKey.Public())
}

// CTLogPublicKeyPEM is the CT log key, as host.ctLogPubkey holds it.
func (s *Sigstore) CTLogPublicKeyPEM(t testing.TB) string {
	t.Helper()
	return pemKey(t, s.ctKey.Public())
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("sigstoretest: generate key: %v", err)
	}
	return k
}

// Serial is a random certificate serial number (120 bits), for
// certificates the tests make.
func Serial(t testing.TB) *big.Int { t.Helper(); return serial(t) }

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		t.Fatalf("sigstoretest: serial: %v", err)
	}
	return n
}

// createCert signs tmpl (for key's public key) with signer as parent, or
// self-signs when parent is nil.
func createCert(t testing.TB, tmpl, parent *x509.Certificate, key, signer *ecdsa.PrivateKey) *x509.Certificate {
	t.Helper()
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
	if err != nil {
		t.Fatalf("sigstoretest: create certificate: %v", err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("sigstoretest: parse certificate: %v", err)
	}
	return c
}

// logID is a log's ID: the SHA-256 of its DER public key.
func logID(t testing.TB, pub crypto.PublicKey) [32]byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatalf("sigstoretest: marshal key: %v", err)
	}
	return sha256.Sum256(der)
}

func pemCert(t testing.TB, c *x509.Certificate) string {
	t.Helper()
	b, err := cryptoutils.MarshalCertificateToPEM(c)
	if err != nil {
		t.Fatalf("sigstoretest: certificate PEM: %v", err)
	}
	return string(b)
}

func pemKey(t testing.TB, pub crypto.PublicKey) string {
	t.Helper()
	b, err := cryptoutils.MarshalPublicKeyToPEM(pub)
	if err != nil {
		t.Fatalf("sigstoretest: key PEM: %v", err)
	}
	return string(b)
}
