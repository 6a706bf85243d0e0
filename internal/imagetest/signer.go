package imagetest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"testing"

	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
)

// KeyKind names a signing key type cosign supports.
type KeyKind string

// The key kinds a Signer can have.
const (
	ECDSAP256 KeyKind = "ecdsa-p256"
	ECDSAP384 KeyKind = "ecdsa-p384"
	RSA2048   KeyKind = "rsa-2048"
	Ed25519   KeyKind = "ed25519"
)

// KeyKinds lists every KeyKind, for table tests.
var KeyKinds = []KeyKind{ECDSAP256, ECDSAP384, RSA2048, Ed25519}

// Signer holds a fresh private key, as `cosign generate-key-pair` makes.
type Signer struct {
	Kind KeyKind
	priv crypto.Signer
	pem  string
}

// NewSigner generates a key of the given kind.
func NewSigner(t testing.TB, kind KeyKind) *Signer {
	t.Helper()
	var (
		priv crypto.Signer
		err  error
	)
	switch kind {
	case ECDSAP256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case ECDSAP384:
		priv, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case RSA2048:
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case Ed25519:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("imagetest: unknown key kind %q", kind)
	}
	if err != nil {
		t.Fatalf("imagetest: generate %s key: %v", kind, err)
	}
	pem, err := cryptoutils.MarshalPublicKeyToPEM(priv.Public())
	if err != nil {
		t.Fatalf("imagetest: marshal %s public key: %v", kind, err)
	}
	return &Signer{Kind: kind, priv: priv, pem: string(pem)}
}

// PublicKey returns the public key.
func (s *Signer) PublicKey() crypto.PublicKey { return s.priv.Public() }

// PublicKeyPEM returns the public key as a PEM "PUBLIC KEY" block, the form
// a policy's trust root holds.
func (s *Signer) PublicKeyPEM() string { return s.pem }

// signLegacy signs a simple-signing payload as cosign v2 does: SHA-256 for
// every key type (pure Ed25519 for Ed25519 keys).
func (s *Signer) signLegacy(t testing.TB, payload []byte) []byte {
	t.Helper()
	sv, err := signature.LoadSignerVerifier(s.priv, crypto.SHA256)
	if err != nil {
		t.Fatalf("imagetest: load signer: %v", err)
	}
	sig, err := sv.SignMessage(bytes.NewReader(payload))
	if err != nil {
		t.Fatalf("imagetest: sign: %v", err)
	}
	return sig
}

// keypair adapts the key to sigstore-go's sign.Keypair with the key's
// default algorithm (ECDSA P-384 with SHA-384, as sigstore-go and cosign v3
// sign), the way sign.EphemeralKeypair does for its own keys.
type keypair struct {
	priv crypto.Signer
	alg  signature.AlgorithmDetails
	hint []byte
}

func (s *Signer) keypair(t testing.TB) *keypair {
	t.Helper()
	alg, err := signature.GetDefaultAlgorithmDetails(s.priv.Public())
	if err != nil {
		t.Fatalf("imagetest: algorithm for %s: %v", s.Kind, err)
	}
	der, err := x509.MarshalPKIXPublicKey(s.priv.Public())
	if err != nil {
		t.Fatalf("imagetest: marshal public key: %v", err)
	}
	sum := sha256.Sum256(der)
	return &keypair{priv: s.priv, alg: alg, hint: []byte(base64.StdEncoding.EncodeToString(sum[:]))}
}

func (k *keypair) GetHashAlgorithm() protocommon.HashAlgorithm { return k.alg.GetProtoHashType() }
func (k *keypair) GetSigningAlgorithm() protocommon.PublicKeyDetails {
	return k.alg.GetSignatureAlgorithm()
}
func (k *keypair) GetHint() []byte                { return k.hint }
func (k *keypair) GetPublicKey() crypto.PublicKey { return k.priv.Public() }

func (k *keypair) GetKeyAlgorithm() string {
	switch k.alg.GetKeyType() {
	case signature.ECDSA:
		return "ECDSA"
	case signature.RSA:
		return "RSA"
	case signature.ED25519:
		return "ED25519"
	}
	return ""
}

func (k *keypair) GetPublicKeyPem() (string, error) {
	b, err := cryptoutils.MarshalPublicKeyToPEM(k.priv.Public())
	return string(b), err
}

// SignData hashes data with the algorithm's hash (none for pure Ed25519)
// and signs the digest.
func (k *keypair) SignData(_ context.Context, data []byte) ([]byte, []byte, error) {
	hf := k.alg.GetHashType()
	msg := data
	if hf != crypto.Hash(0) {
		h := hf.New()
		h.Write(data)
		msg = h.Sum(nil)
	}
	sig, err := k.priv.Sign(rand.Reader, msg, hf)
	if err != nil {
		return nil, nil, err
	}
	return sig, msg, nil
}
