// Package policytest keeps test policies readable and their files real:
// a policy directory laid out as kubelet mounts a ConfigMap (ConfigMapDir),
// and KEY_<NAME> placeholders in a YAML text that become the quoted PEM of a
// test public key. The keys are
// generated once per test binary (RSA generation is slow). It is shared by
// the packages that check a policy's keys: policy itself and the
// validators under verify/. It must not import policy (policy's own tests
// use it).
package policytest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Names are the test keys there are: ECDSA on three curves, RSA of two
// sizes and Ed25519.
var Names = []string{"P256", "P384", "P521", "RSA2048", "RSA1024", "ED25519"}

var (
	keysOnce sync.Once
	keys     map[string]crypto.PublicKey
)

// Keys returns the test public keys by name (see Names).
func Keys(t testing.TB) map[string]crypto.PublicKey {
	t.Helper()
	keysOnce.Do(func() {
		keys = map[string]crypto.PublicKey{}
		for name, curve := range map[string]elliptic.Curve{"P256": elliptic.P256(), "P384": elliptic.P384(), "P521": elliptic.P521()} {
			k, err := ecdsa.GenerateKey(curve, rand.Reader)
			if err != nil {
				panic(err)
			}
			keys[name] = &k.PublicKey
		}
		for name, bits := range map[string]int{"RSA2048": 2048, "RSA1024": 1024} {
			k, err := rsa.GenerateKey(rand.Reader, bits)
			if err != nil {
				panic(err)
			}
			keys[name] = &k.PublicKey
		}
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			panic(err)
		}
		keys["ED25519"] = pub
	})
	return keys
}

// KeyPEM returns the PKIX PEM of the named test key.
func KeyPEM(t testing.TB, name string) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(Keys(t)[name])
	if err != nil {
		t.Fatalf("marshal %s: %v", name, err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// WithKeys replaces KEY_<NAME> placeholders in a YAML text with the quoted
// PEM of that test key.
func WithKeys(t testing.TB, yaml string) string {
	t.Helper()
	for _, name := range Names {
		if ph := "KEY_" + name; strings.Contains(yaml, ph) {
			yaml = strings.ReplaceAll(yaml, ph, strconv.Quote(KeyPEM(t, name)))
		}
	}
	return yaml
}
