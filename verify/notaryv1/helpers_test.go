package notaryv1

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/nri-image-verifier/nri-image-verifier/verify"
)

// key is a named trust root for a test policy.
type key struct{ name, pem string }

// newValidator parses a Connaisseur-shaped notaryv1 validator with the
// given host and roots, as the policy loader does, and returns it with
// the rule options of its one rule.
func newValidator(t testing.TB, host, with string, keys ...key) (*policy.Validator, policy.With) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "validators:\n- name: notary\n  type: notaryv1\n  host: %q\n  trustRoots:\n", host)
	for _, k := range keys {
		fmt.Fprintf(&b, "  - name: %s\n    key: %s\n", k.name, strconv.Quote(k.pem))
	}
	fmt.Fprintf(&b, "policy:\n- pattern: '*'\n  validator: notary\n")
	if with != "" {
		fmt.Fprintf(&b, "  with: %s\n", with)
	}
	p, err := policy.Parse([]byte(b.String()))
	if err != nil {
		t.Fatalf("policy: %v\n%s", err, b.String())
	}
	return p.Validator("notary"), p.Rules[0].With
}

func newVerifier(t testing.TB, v *policy.Validator, opts Options) *Verifier {
	t.Helper()
	nv, err := New(v, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return nv
}

// check runs one verification that must end in a verdict.
func check(t testing.TB, v *Verifier, s verify.Subject, with policy.With) verify.Verdict {
	t.Helper()
	got, err := verifyOnce(v, s, with)
	if err != nil {
		t.Fatalf("Verify(%+v): unexpected error: %v", s, err)
	}
	t.Logf("verdict: allowed=%v signers=%v reason=%q", got.Allowed, got.Signers, got.Reason)
	return got
}

func verifyOnce(v *Verifier, s verify.Subject, with policy.With) (verify.Verdict, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return v.Verify(ctx, s, with)
}

func wantAllowed(t testing.TB, got verify.Verdict, reasonHas ...string) {
	t.Helper()
	if !got.Allowed {
		t.Fatalf("denied: %s", got.Reason)
	}
	for _, s := range reasonHas {
		if !strings.Contains(got.Reason, s) {
			t.Errorf("reason %q lacks %q", got.Reason, s)
		}
	}
}

func wantDenied(t testing.TB, got verify.Verdict, reasonHas ...string) {
	t.Helper()
	if got.Allowed {
		t.Fatalf("allowed: %s", got.Reason)
	}
	for _, s := range reasonHas {
		if !strings.Contains(got.Reason, s) {
			t.Errorf("reason %q lacks %q", got.Reason, s)
		}
	}
}

// otherKey is an ECDSA public key nobody signs with.
func otherKey(t testing.TB) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}
