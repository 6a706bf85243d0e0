package policy

import (
	"crypto"
	"testing"

	"github.com/nri-image-verifier/nri-image-verifier/internal/policytest"
)

func testKeys(t testing.TB) map[string]crypto.PublicKey { return policytest.Keys(t) }

// pemKey returns the PKIX PEM of the named test key.
func pemKey(t testing.TB, name string) string { return policytest.KeyPEM(t, name) }

// withKeys replaces KEY_<NAME> placeholders in a YAML text with the quoted
// PEM of that test key, so policies in tests stay readable.
func withKeys(t testing.TB, yaml string) string { return policytest.WithKeys(t, yaml) }

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
