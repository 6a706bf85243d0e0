package keys_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/nri-image-verifier/nri-image-verifier/internal/policytest"
	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/nri-image-verifier/nri-image-verifier/verify/keys"
	"github.com/nri-image-verifier/nri-image-verifier/verify/validators"
)

func pemKey(t testing.TB, name string) string { return policytest.KeyPEM(t, name) }

func TestKeyTypes(t *testing.T) {
	tests := []struct {
		key     string
		wantErr string // "" for accepted
	}{
		{"P256", ""},
		{"P384", ""},
		{"RSA2048", ""},
		{"ED25519", ""},
		{"RSA1024", "RSA key of 1024 bits, need >= 2048"},
		{"P521", "ECDSA key on curve P-521, need P-256 or P-384"},
	}
	for _, tt := range tests {
		pub, err := keys.Parse(pemKey(t, tt.key))
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tt.key, err)
		case tt.wantErr == "" && pub == nil:
			t.Errorf("%s: no public key", tt.key)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%s: error %v, want %q", tt.key, err, tt.wantErr)
		}
		// Through the loader, with the field path.
		_, err = policy.ParseWith([]byte(policytest.WithKeys(t, "validators: [{name: default, type: cosign, trustRoots: [{name: default, key: KEY_"+tt.key+"}]}]\npolicy: [{pattern: '*'}]")), validators.Check)
		if (err == nil) != (tt.wantErr == "") {
			t.Errorf("Parse with %s: %v", tt.key, err)
		} else if err != nil && !strings.Contains(err.Error(), "validators[0].trustRoots[0].key: "+tt.wantErr) {
			t.Errorf("Parse with %s: error %v lacks the path", tt.key, err)
		}
	}
}

func TestKeyForms(t *testing.T) {
	rsaKey := policytest.Keys(t)["RSA2048"].(*rsa.PublicKey)
	pkcs1 := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(rsaKey)}))
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	privPEM := string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
	cert := "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
	tests := []struct {
		name, key, wantErr string
	}{
		{"PKCS#1 RSA", pkcs1, ""},
		{"surrounding blank lines", "\n\n" + pemKey(t, "P256") + "\n", ""},
		{"private key", privPEM, `is a private key (PEM type "EC PRIVATE KEY"); give the public key`},
		{"two keys", pemKey(t, "P256") + pemKey(t, "P384"), "more than one PEM block"},
		{"certificate", cert, "cannot parse the public key"},
		{"truncated", pemKey(t, "P256")[:60], "is not an inline PEM public key"},
		{"KMS URI", "gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k", `"gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k" is not an inline PEM public key`},
		{"k8s secret ref", "k8s://ns/secret", "KMS references are not supported by this version yet"},
		{"empty", "", "is not an inline PEM public key"},
		{"DER without armour", derBody(t, pemKey(t, "P256")), "a base64 DER public key without its PEM lines"},
	}
	// KMS is named only for what looks like a KMS reference.
	for _, notKMS := range []string{"hello", "", derBody(t, pemKey(t, "P256")), pemKey(t, "P256")[:60]} {
		if _, err := keys.Parse(notKMS); err == nil || strings.Contains(err.Error(), "KMS") {
			t.Errorf("Parse(%.20q): %v, want an error that does not speak of KMS", notKMS, err)
		}
	}
	for _, tt := range tests {
		_, err := keys.Parse(tt.key)
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: error %v, want %q", tt.name, err, tt.wantErr)
		}
		if err != nil && strings.Contains(err.Error(), "MHc") {
			t.Errorf("%s: error echoes key material: %v", tt.name, err)
		}
	}
}

// derBody is a PEM key's base64 body without its BEGIN and END lines.
func derBody(t *testing.T, pemText string) string {
	t.Helper()
	block, _ := pem.Decode([]byte(pemText))
	if block == nil {
		t.Fatal("not PEM")
	}
	return base64.StdEncoding.EncodeToString(block.Bytes)
}
