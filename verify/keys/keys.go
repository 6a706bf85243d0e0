// Package keys answers one question: is this inline PEM text a public key
// that signatures are verified with here, and which? cosign and notaryv1
// trust roots pin keys this way. It knows nothing of policies, images or
// signatures.
package keys

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

// minRSABits is the smallest RSA modulus accepted (NIST SP 800-57: 1024
// bits no longer gives enough security).
const minRSABits = 2048

// errNotPEM explains a key that is not PEM.
var errNotPEM = errors.New(`is not an inline PEM public key ("-----BEGIN PUBLIC KEY-----")`)

// Parse reads an inline PEM public key and checks that it is of a kind and
// size that signatures are verified with here: ECDSA P-256 or P-384, RSA of
// at least 2048 bits, or Ed25519. Its errors never echo key material.
func Parse(key string) (crypto.PublicKey, error) {
	block, rest := pem.Decode([]byte(key))
	if block == nil {
		return nil, notPEM(key)
	}
	if strings.Contains(block.Type, "PRIVATE") {
		// Say so without echoing anything of it.
		return nil, fmt.Errorf("is a private key (PEM type %q); give the public key", block.Type)
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, errors.New("holds more than one PEM block; give one public key per trust root")
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey([]byte(key))
	if err != nil {
		return nil, fmt.Errorf("cannot parse the public key: %w", err)
	}
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() || k.Curve == elliptic.P384() {
			return k, nil
		}
		return nil, fmt.Errorf("ECDSA key on curve %s, need P-256 or P-384", k.Curve.Params().Name)
	case *rsa.PublicKey:
		if bits := k.N.BitLen(); bits < minRSABits {
			return nil, fmt.Errorf("RSA key of %d bits, need >= %d", bits, minRSABits)
		}
		return k, nil
	case ed25519.PublicKey:
		return k, nil
	}
	return nil, fmt.Errorf("unsupported key type %T, need ECDSA P-256/P-384, RSA >= %d bits or Ed25519", pub, minRSABits)
}

// notPEM says what a value that is no PEM block looks like instead, so that
// the operator knows what to change. Connaisseur reads a "scheme://" value
// as a KMS reference, which the node does not reach; a base64 DER key only
// lacks its armour. Nothing of the value is echoed but a short reference.
func notPEM(key string) error {
	ref := strings.TrimSpace(key)
	if scheme, _, ok := strings.Cut(ref, "://"); ok && scheme != "" && len(ref) < 200 && !strings.ContainsAny(ref, "\r\n") {
		return fmt.Errorf("%q %w; KMS references are not supported by this version yet", ref, errNotPEM)
	}
	compact := strings.Join(strings.Fields(ref), "")
	if der, err := base64.StdEncoding.DecodeString(compact); err == nil && len(der) > 0 {
		if _, err := x509.ParsePKIXPublicKey(der); err == nil {
			return fmt.Errorf("value %w: it is a base64 DER public key without its PEM lines; "+
				"put it between \"-----BEGIN PUBLIC KEY-----\" and \"-----END PUBLIC KEY-----\"", errNotPEM)
		}
	}
	return fmt.Errorf("value %w", errNotPEM)
}
