package policy

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

// Keys are generated once per test binary: RSA generation is slow.
var (
	keysOnce sync.Once
	keys     map[string]crypto.PublicKey
)

func testKeys(t testing.TB) map[string]crypto.PublicKey {
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

// pemKey returns the PKIX PEM of the named test key.
func pemKey(t testing.TB, name string) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(testKeys(t)[name])
	if err != nil {
		t.Fatalf("marshal %s: %v", name, err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// withKeys replaces KEY_<NAME> placeholders in a YAML text with the quoted
// PEM of that test key, so policies in tests stay readable.
func withKeys(t testing.TB, yaml string) string {
	t.Helper()
	for _, name := range []string{"P256", "P384", "P521", "RSA2048", "RSA1024", "ED25519"} {
		if ph := "KEY_" + name; strings.Contains(yaml, ph) {
			yaml = strings.ReplaceAll(yaml, ph, strconv.Quote(pemKey(t, name)))
		}
	}
	return yaml
}

// mustParse parses a test policy (with key placeholders) or fails the test.
func mustParse(t testing.TB, yaml string) *Policy {
	t.Helper()
	p, err := Parse([]byte(withKeys(t, yaml)))
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, yaml)
	}
	return p
}

const testDigest = "sha256:1388abc7a12532836c3a81bdb0087409b15208f5aeba7a87aedcfd56d637c145"
const otherDigest = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
