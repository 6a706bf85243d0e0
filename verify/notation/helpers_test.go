package notation

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/nri-image-verifier/nri-image-verifier/verify"
	"github.com/nri-image-verifier/nri-image-verifier/verify/registry"
)

// The identity the tests pin, and a signer subject that matches it.
const pinned = "x509.subject: C=US, ST=WA, O=Example, CN=release"

var release = imagetest.NotationSubject("Example", "release")

// envelope is one of the two formats notation signs with.
type envelope struct{ name, mediaType string }

var envelopes = []envelope{{"jws", imagetest.NotationJWS}, {"cose", imagetest.NotationCOSE}}

// tr pairs a trust root name with the CA whose certificate it holds.
type tr struct {
	name string
	ca   *imagetest.NotationCA
}

func newValidator(roots ...tr) *policy.Validator {
	v := &policy.Validator{Name: "notation-test", Type: policy.TypeNotation}
	for _, r := range roots {
		v.TrustRoots = append(v.TrustRoots, policy.TrustRoot{Name: r.name, Cert: r.ca.PEM()})
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

func newVerifier(t testing.TB, reg *registry.Client, roots ...tr) *Verifier {
	t.Helper()
	v, err := New(newValidator(roots...), reg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// with is a rule pinning the release identity at a level.
func with(level string, ids ...string) policy.With {
	if len(ids) == 0 {
		ids = []string{pinned}
	}
	return policy.With{VerificationLevel: level, TrustedIdentities: ids}
}

// verifyOnce runs one verification that must end in a verdict.
func verifyOnce(t testing.TB, v *Verifier, s verify.Subject, w policy.With) verify.Verdict {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got, err := v.Verify(ctx, s, w)
	if err != nil {
		t.Fatalf("Verify(%+v): unexpected error: %v", s, err)
	}
	t.Logf("verdict: allowed=%v signers=%v reason=%q", got.Allowed, got.Signers, got.Reason)
	return got
}

func wantAllowed(t testing.TB, got verify.Verdict, signers []string, reasonHas ...string) {
	t.Helper()
	if !got.Allowed {
		t.Fatalf("denied (%s), want allowed", got.Reason)
	}
	if fmt.Sprint(got.Signers) != fmt.Sprint(signers) {
		t.Fatalf("signers %v, want %v", got.Signers, signers)
	}
	wantReason(t, got, reasonHas...)
}

func wantDenied(t testing.TB, got verify.Verdict, reasonHas ...string) {
	t.Helper()
	if got.Allowed {
		t.Fatalf("allowed (%s), want denied", got.Reason)
	}
	wantReason(t, got, reasonHas...)
}

func wantReason(t testing.TB, got verify.Verdict, reasonHas ...string) {
	t.Helper()
	for _, s := range reasonHas {
		if !strings.Contains(got.Reason, s) {
			t.Fatalf("reason %q does not mention %q", got.Reason, s)
		}
	}
}
