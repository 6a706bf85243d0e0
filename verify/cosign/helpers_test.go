package cosign

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/nri-image-verifier/nri-image-verifier/verify"
	"github.com/nri-image-verifier/nri-image-verifier/verify/registry"
)

// format is one way cosign stores a signature.
type format struct {
	name string
	sign func(t testing.TB, repo, digest string, s *imagetest.Signer, o imagetest.SignOptions)
}

var formats = []format{
	{"legacy", imagetest.SignLegacy},
	{"bundle", imagetest.SignBundle},
}

// root pairs a trust root name with the signer whose public key it holds.
type root struct {
	name   string
	signer *imagetest.Signer
}

// newValidator builds a cosign policy validator as a policy file would
// have it: PEM keys (New parses them).
func newValidator(t testing.TB, roots ...root) *policy.Validator {
	t.Helper()
	v := &policy.Validator{Name: "cosign-test", Type: policy.TypeCosign}
	for _, r := range roots {
		v.TrustRoots = append(v.TrustRoots, policy.TrustRoot{Name: r.name, Key: r.signer.PublicKeyPEM()})
	}
	return v
}

func newClient(t testing.TB, opts registry.Options) *registry.Client {
	t.Helper()
	c, err := registry.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newVerifier(t testing.TB, reg *registry.Client, roots ...root) *Verifier {
	t.Helper()
	v, err := New(newValidator(t, roots...), reg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// check runs one verification that must end in a verdict.
func check(t testing.TB, v *Verifier, s verify.Subject, with policy.With) verify.Verdict {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got, err := v.Verify(ctx, s, with)
	if err != nil {
		t.Fatalf("Verify(%+v): unexpected error: %v", s, err)
	}
	t.Logf("verdict: allowed=%v signers=%v reason=%q", got.Allowed, got.Signers, got.Reason)
	return got
}

func wantAllowed(t testing.TB, got verify.Verdict, signers ...string) {
	t.Helper()
	if !got.Allowed {
		t.Fatalf("denied (%s), want allowed", got.Reason)
	}
	if fmt.Sprint(got.Signers) != fmt.Sprint(signers) {
		t.Fatalf("signers %v, want %v", got.Signers, signers)
	}
}

func wantDenied(t testing.TB, got verify.Verdict, reasonHas ...string) {
	t.Helper()
	if got.Allowed {
		t.Fatalf("allowed (%s), want denied", got.Reason)
	}
	for _, s := range reasonHas {
		if !strings.Contains(got.Reason, s) {
			t.Fatalf("reason %q does not mention %q", got.Reason, s)
		}
	}
}

func intp(n int) *int { return &n }

// counter counts the HTTP requests that reach the network.
type counter struct {
	next http.RoundTripper
	n    atomic.Int64
	log  func(string, ...any)
}

func (c *counter) RoundTrip(req *http.Request) (*http.Response, error) {
	c.n.Add(1)
	if c.log != nil {
		c.log("request %s %s", req.Method, req.URL)
	}
	return c.next.RoundTrip(req)
}
