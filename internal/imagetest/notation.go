package imagetest

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/notaryproject/notation-core-go/signature"
	"github.com/notaryproject/notation-core-go/signature/cose"
	"github.com/notaryproject/notation-core-go/signature/jws"
	notationgo "github.com/notaryproject/notation-go"
	"github.com/notaryproject/notation-go/signer"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nri-image-verifier/nri-image-verifier/internal/sigstoretest"
)

// Notation's names for what it stores (notation-go registry and envelope).
const (
	NotationArtifactType = "application/vnd.cncf.notary.signature"
	NotationJWS          = jws.MediaTypeEnvelope  // application/jose+json
	NotationCOSE         = cose.MediaTypeEnvelope // application/cose
	notationPayloadType  = "application/vnd.cncf.notary.payload.v1+json"
	notationThumbprints  = "io.cncf.notary.x509chain.thumbprint#S256"
)

// NotationCA is a root CA that issues notation signing certificates.
type NotationCA struct {
	Cert *x509.Certificate
	key  crypto.Signer
}

// NotationSubject is a certificate subject with the attributes notation
// requires of a trusted identity (C, ST and O) and the given CN.
func NotationSubject(org, cn string) pkix.Name {
	return pkix.Name{Country: []string{"US"}, Province: []string{"WA"}, Organization: []string{org}, CommonName: cn}
}

// NewNotationCA makes a self-signed root CA (ECDSA P-256) valid for a day
// either side of now.
func NewNotationCA(t testing.TB, subject pkix.Name) *NotationCA {
	t.Helper()
	key := sigstoretest.NewKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          sigstoretest.Serial(t),
		Subject:               subject,
		NotBefore:             time.Now().Add(-24 * time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            1,
	}
	return &NotationCA{Cert: notationCert(t, tmpl, tmpl, key.Public(), key), key: key}
}

// PEM is the CA certificate, as a policy's trust root cert.
func (ca *NotationCA) PEM() string { return NotationCertPEM(ca.Cert) }

// NotationCertPEM encodes a certificate as PEM.
func NotationCertPEM(c *x509.Certificate) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
}

// NotationSigner holds a signing key and its chain, leaf first.
type NotationSigner struct {
	Chain []*x509.Certificate
	key   crypto.Signer
}

// Issue makes a code-signing leaf certificate for subject, valid from
// notBefore to notAfter (zero: a day either side of now), and returns it
// with its chain (leaf, then this root, as notation requires).
func (ca *NotationCA) Issue(t testing.TB, subject pkix.Name, notBefore, notAfter time.Time) *NotationSigner {
	t.Helper()
	if notBefore.IsZero() {
		notBefore = time.Now().Add(-24 * time.Hour)
	}
	if notAfter.IsZero() {
		notAfter = time.Now().Add(24 * time.Hour)
	}
	key := sigstoretest.NewKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          sigstoretest.Serial(t),
		Subject:               subject,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		BasicConstraintsValid: true,
	}
	leaf := notationCert(t, tmpl, ca.Cert, key.Public(), ca.key)
	return &NotationSigner{Chain: []*x509.Certificate{leaf, ca.Cert}, key: key}
}

// NotationSignOptions vary how SignNotation signs.
type NotationSignOptions struct {
	// MediaType is the envelope format: NotationJWS (default) or
	// NotationCOSE.
	MediaType string
	// SigningTime, if set, signs as of then with notation-core-go's
	// envelope directly (notation-go's signer always signs as of now, and
	// refuses a certificate that has expired by then).
	SigningTime time.Time
	// Expiry sets the signature's own expiry, after signing time.
	Expiry time.Duration
	// Tamper changes the signed payload after signing (JWS only).
	Tamper bool
	// Plugin names a verification plugin the signature requires (a
	// critical signed attribute); it signs as of now with notation-core-go.
	Plugin string
}

// SignNotation signs the manifest digest in repo as `notation sign` does
// (notation-go's generic signer over the manifest's descriptor: digest,
// media type and size) and attaches the envelope as notation's signature
// manifest, an OCI 1.1 referrer of the image.
func SignNotation(t testing.TB, repo, digestStr string, s *NotationSigner, opts NotationSignOptions) {
	t.Helper()
	env := NotationEnvelope(t, repo, digestStr, s, opts)
	mt := opts.MediaType
	if mt == "" {
		mt = NotationJWS
	}
	AttachNotation(t, repo, digestStr, mt, env, s.Chain)
}

// NotationEnvelope makes the signature envelope SignNotation attaches.
func NotationEnvelope(t testing.TB, repo, digestStr string, s *NotationSigner, opts NotationSignOptions) []byte {
	t.Helper()
	r := parseRepo(t, repo)
	head, err := remote.Head(r.Digest(digestStr))
	if err != nil {
		t.Fatalf("imagetest: head %s@%s: %v", repo, digestStr, err)
	}
	desc := ocispec.Descriptor{MediaType: string(head.MediaType), Digest: digest.Digest(head.Digest.String()), Size: head.Size}
	mt := opts.MediaType
	if mt == "" {
		mt = NotationJWS
	}
	var env []byte
	if opts.Plugin != "" && opts.SigningTime.IsZero() {
		opts.SigningTime = time.Now()
	}
	if opts.SigningTime.IsZero() {
		gs, err := signer.NewGenericSigner(s.key, s.Chain)
		if err != nil {
			t.Fatalf("imagetest: notation signer: %v", err)
		}
		env, _, err = gs.Sign(context.Background(), desc, notationgo.SignerSignOptions{SignatureMediaType: mt, ExpiryDuration: opts.Expiry})
		if err != nil {
			t.Fatalf("imagetest: notation sign: %v", err)
		}
	} else {
		env = signAt(t, desc, s, mt, opts)
	}
	if opts.Tamper {
		env = tamperJWS(t, env)
	}
	return env
}

// signAt is what the generic signer does, at a given signing time.
func signAt(t testing.TB, desc ocispec.Descriptor, s *NotationSigner, mt string, opts NotationSignOptions) []byte {
	t.Helper()
	payload, err := json.Marshal(map[string]ocispec.Descriptor{"targetArtifact": desc})
	if err != nil {
		t.Fatalf("imagetest: notation payload: %v", err)
	}
	ls, err := signature.NewLocalSigner(s.Chain, s.key)
	if err != nil {
		t.Fatalf("imagetest: notation local signer: %v", err)
	}
	e, err := signature.NewEnvelope(mt)
	if err != nil {
		t.Fatalf("imagetest: notation envelope: %v", err)
	}
	req := &signature.SignRequest{
		Payload:       signature.Payload{ContentType: notationPayloadType, Content: payload},
		Signer:        ls,
		SigningTime:   opts.SigningTime,
		SigningScheme: signature.SigningSchemeX509,
		SigningAgent:  "imagetest",
	}
	if opts.Expiry != 0 {
		req.Expiry = opts.SigningTime.Add(opts.Expiry)
	}
	if opts.Plugin != "" {
		req.ExtendedSignedAttributes = []signature.Attribute{{Key: "io.cncf.notary.verificationPlugin", Critical: true, Value: opts.Plugin}}
	}
	env, err := e.Sign(req)
	if err != nil {
		t.Fatalf("imagetest: notation sign at %v: %v", opts.SigningTime, err)
	}
	return env
}

// tamperJWS adds an annotation to the signed payload of a JWS envelope,
// keeping the signature: the envelope then fails its integrity check.
func tamperJWS(t testing.TB, env []byte) []byte {
	t.Helper()
	var e map[string]any
	if err := json.Unmarshal(env, &e); err != nil {
		t.Fatalf("imagetest: tamper: only JWS envelopes can be tampered with: %v", err)
	}
	raw, err := base64.RawURLEncoding.DecodeString(e["payload"].(string))
	if err != nil {
		t.Fatalf("imagetest: tamper: payload: %v", err)
	}
	var p map[string]map[string]any
	if err := json.Unmarshal(raw, &p); err != nil {
		t.Fatalf("imagetest: tamper: payload: %v", err)
	}
	p["targetArtifact"]["annotations"] = map[string]string{"tampered": "yes"}
	raw, err = json.Marshal(p)
	if err != nil {
		t.Fatalf("imagetest: tamper: %v", err)
	}
	e["payload"] = base64.RawURLEncoding.EncodeToString(raw)
	out, err := json.Marshal(e)
	if err != nil {
		t.Fatalf("imagetest: tamper: %v", err)
	}
	return out
}

// AttachNotation pushes env as notation's signature manifest of digest:
// config of media type application/vnd.cncf.notary.signature (the empty
// JSON object), one layer (the envelope), the chain's thumbprints as an
// annotation, and the image as subject; laid out as notation-go's
// repository.PushSignature does.
func AttachNotation(t testing.TB, repo, digestStr, envelopeType string, env []byte, chain []*x509.Certificate) {
	t.Helper()
	r := parseRepo(t, repo)
	subj, err := remote.Head(r.Digest(digestStr))
	if err != nil {
		t.Fatalf("imagetest: head %s@%s: %v", repo, digestStr, err)
	}
	cfgDesc := describeBlob(t, r, static.NewLayer([]byte("{}"), types.MediaType(NotationArtifactType)))
	layerDesc := describeBlob(t, r, static.NewLayer(env, types.MediaType(envelopeType)))
	thumbs := make([]string, len(chain))
	for i, c := range chain {
		sum := sha256.Sum256(c.Raw)
		thumbs[i] = hex.EncodeToString(sum[:])
	}
	tj, err := json.Marshal(thumbs)
	if err != nil {
		t.Fatalf("imagetest: thumbprints: %v", err)
	}
	putReferrer(t, r, v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		Config:        cfgDesc,
		Layers:        []v1.Descriptor{layerDesc},
		Subject:       &v1.Descriptor{MediaType: subj.MediaType, Digest: subj.Digest, Size: subj.Size},
		Annotations: map[string]string{
			notationThumbprints:                string(tj),
			"org.opencontainers.image.created": time.Now().UTC().Format(time.RFC3339),
		},
	})
}

func notationCert(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		t.Fatalf("imagetest: certificate: %v", err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("imagetest: certificate: %v", err)
	}
	return c
}
