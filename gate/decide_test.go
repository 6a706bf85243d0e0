package gate

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/nri-image-verifier/nri-image-verifier/verify"
)

const testPolicy = `
validators:
- name: default
  type: static
  approve: true
- name: deny
  type: static
  approve: false
- name: fake
  type: static
  approve: true
policy:
- pattern: "127.0.0.1:5000/*"
- pattern: "127.0.0.1:5000/bad/*"
  validator: deny
- pattern: "127.0.0.1:5000/audited/*"
  validator: deny
  mode: audit
- pattern: "127.0.0.1:5000/fake/*"
  validator: fake
`

// fakes lets a test choose what the "fake" validator answers.
type fakes struct {
	calls   atomic.Int32
	verdict verify.Verdict
	err     error
	block   chan struct{}
}

func (f *fakes) build(v *policy.Validator) (verify.Verifier, error) {
	if v.Name != "fake" {
		return staticVerifier(*v.Approve), nil
	}
	return verify.VerifierFunc(func(ctx context.Context, s verify.Subject, _ policy.With) (verify.Verdict, error) {
		f.calls.Add(1)
		if f.block != nil {
			<-f.block
		}
		return f.verdict, f.err
	}), nil
}

func staticVerifier(ok bool) verify.Verifier {
	return verify.VerifierFunc(func(context.Context, verify.Subject, policy.With) (verify.Verdict, error) {
		return verify.Verdict{Allowed: ok, Reason: "static"}, nil
	})
}

func newGate(t testing.TB, src string, f *fakes) *Gate {
	t.Helper()
	pol, err := policy.Parse([]byte(src))
	if err != nil {
		t.Fatalf("policy: %v", err)
	}
	g, err := New(pol, f.build, nil)
	if err != nil {
		t.Fatalf("gate: %v", err)
	}
	return g
}

const dgst = "sha256:0000000000000000000000000000000000000000000000000000000000000001"

func TestDecide(t *testing.T) {
	g := newGate(t, testPolicy, &fakes{})
	cases := []struct {
		name, image, digest string
		allowed             bool
		verdict             Verdict
		rule                string
		reason              string
	}{
		{"allowed by default rule", "127.0.0.1:5000/app:v1", dgst, true, VerdictAllow, "127.0.0.1:5000/*", "static"},
		{"denied by specific rule", "127.0.0.1:5000/bad/app:v1", dgst, false, VerdictDeny, "127.0.0.1:5000/bad/*", "static"},
		{"audit rule allows", "127.0.0.1:5000/audited/app:v1", dgst, true, VerdictAuditDeny, "127.0.0.1:5000/audited/*", "static"},
		{"no rule", "ghcr.io/x/y:1", dgst, false, VerdictDeny, "", "ghcr.io/x/y"},
		{"no digest", "127.0.0.1:5000/app:v1", "", false, VerdictDeny, "127.0.0.1:5000/*", "did not report the image digest"},
		{"no digest in audit rule", "127.0.0.1:5000/audited/app:v1", "", true, VerdictAuditDeny, "127.0.0.1:5000/audited/*", "did not report the image digest"},
		{"bare image ID", "sha256:" + strings.Repeat("a", 64), dgst, false, VerdictDeny, "", "repository"},
		{"no image name", "", dgst, false, VerdictDeny, "", "image name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := g.Decide(context.Background(), Input{Image: tc.image, Digest: tc.digest, Namespace: "default"})
			if d.Allowed != tc.allowed || d.Verdict != tc.verdict || d.Rule != tc.rule {
				t.Fatalf("got allowed=%v verdict=%q rule=%q (%s), want %v %q %q",
					d.Allowed, d.Verdict, d.Rule, d.Reason, tc.allowed, tc.verdict, tc.rule)
			}
			if !strings.Contains(d.Reason, tc.reason) {
				t.Fatalf("reason %q does not contain %q", d.Reason, tc.reason)
			}
		})
	}
}

func TestDecideGlobalAuditMode(t *testing.T) {
	g := newGate(t, "mode: audit\n"+testPolicy, &fakes{})
	d := g.Decide(context.Background(), Input{Image: "ghcr.io/x/y:1", Digest: dgst})
	if !d.Allowed || d.Verdict != VerdictAuditDeny || d.Mode != "audit" {
		t.Fatalf("unmatched image in audit mode: %+v", d)
	}
}

func TestDecidePendingThenCached(t *testing.T) {
	f := &fakes{verdict: verify.Verdict{Allowed: true, Reason: "signed"}, block: make(chan struct{})}
	g := newGate(t, testPolicy, f)
	in := Input{Image: "127.0.0.1:5000/fake/app:v1", Digest: dgst}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	d := g.Decide(ctx, in)
	if d.Allowed || !d.Pending || !strings.Contains(d.Reason, "deadline") ||
		!strings.Contains(d.Message(in), "verification still running (no verdict by the decision deadline") {
		t.Fatalf("blocked verification: %+v, want pending deny", d)
	}
	close(f.block)
	deadline := time.Now().Add(10 * time.Second)
	for {
		d = g.Decide(context.Background(), in)
		if d.CacheHit || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if !d.Allowed || !d.CacheHit || d.Reason != "signed" {
		t.Fatalf("retry: %+v, want cached allow", d)
	}
	if n := f.calls.Load(); n != 1 {
		t.Fatalf("verifier called %d times, want 1", n)
	}
}

// Once a verification of a registry is overdue, a create of another digest
// from it is answered pending at once instead of holding the runtime's NRI
// lock until its deadline (the gate names the registry and namespace as the
// cache's groups). On old main it waited for the whole deadline.
func TestDecideTarpitRegistryAnswersAtOnce(t *testing.T) {
	f := &fakes{verdict: verify.Verdict{Allowed: true}, block: make(chan struct{})}
	defer close(f.block)
	g := newGate(t, testPolicy, f)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	first := Input{Image: "127.0.0.1:5000/fake/app:v1", Digest: dgst, Namespace: "tenant"}
	if d := g.Decide(ctx, first); !d.Pending {
		t.Fatalf("first create: %+v, want pending", d)
	}
	other := first
	other.Digest = "sha256:" + strings.Repeat("2", 64)
	done := make(chan Decision, 1)
	go func() { done <- g.Decide(context.Background(), other) }()
	select {
	case d := <-done:
		if d.Allowed || !d.Pending {
			t.Fatalf("second digest of the tarpit registry: %+v, want a pending deny", d)
		}
	case <-time.After(5 * time.Second): // detects blocking; measures nothing
		t.Fatal("second digest of the tarpit registry waited for its verification")
	}
}

func TestDecideTransientError(t *testing.T) {
	f := &fakes{err: errors.New("dial tcp 127.0.0.1:5000: connection refused")}
	g := newGate(t, testPolicy, f)
	d := g.Decide(context.Background(), Input{Image: "127.0.0.1:5000/fake/app:v1", Digest: dgst})
	if d.Allowed || !strings.Contains(d.Reason, "verification failed") || !strings.Contains(d.Reason, "connection refused") {
		t.Fatalf("got %+v", d)
	}
}

func TestSetPolicy(t *testing.T) {
	f := &fakes{verdict: verify.Verdict{Allowed: true}}
	g := newGate(t, testPolicy, f)
	in := Input{Image: "127.0.0.1:5000/fake/app:v1", Digest: dgst}
	g.Decide(context.Background(), in)
	g.Decide(context.Background(), in)
	if n := f.calls.Load(); n != 1 {
		t.Fatalf("calls = %d, want 1 (second decision cached)", n)
	}
	// A new policy version must not reuse the old verdicts.
	pol, err := policy.Parse([]byte(testPolicy + "\n# changed\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.SetPolicy(pol); err != nil {
		t.Fatal(err)
	}
	g.Decide(context.Background(), in)
	if n := f.calls.Load(); n != 2 {
		t.Fatalf("calls = %d, want 2 after reload", n)
	}
	// A policy whose validators cannot be built leaves the old one in force.
	bad := *pol
	bad.Version = "other"
	g.build = func(*policy.Validator) (verify.Verifier, error) { return nil, errors.New("broken") }
	if err := g.SetPolicy(&bad); err == nil {
		t.Fatal("SetPolicy accepted a policy whose validators fail to build")
	}
	if g.Policy() != pol {
		t.Fatal("failed SetPolicy replaced the policy in force")
	}
}

// DecideCached answers only from the cache, never verifying, and then
// exactly as Decide does.
func TestDecideCached(t *testing.T) {
	f := &fakes{verdict: verify.Verdict{Allowed: true, Reason: "signed"}}
	g := newGate(t, testPolicy, f)
	in := Input{Image: "127.0.0.1:5000/fake/app:v1", Digest: dgst, Namespace: "default"}
	if d, ok := g.DecideCached(in); ok {
		t.Fatalf("cold cache answered: %+v", d)
	}
	if n := f.calls.Load(); n != 0 {
		t.Fatalf("DecideCached verified %d times", n)
	}
	want := g.Decide(context.Background(), in)
	got, ok := g.DecideCached(in)
	if !ok {
		t.Fatal("warm cache did not answer")
	}
	got.Latency, want.Latency, want.CacheHit = 0, 0, true
	if got != want {
		t.Fatalf("DecideCached %+v, Decide %+v", got, want)
	}
	// Answers that need no verdict are given at once too.
	if d, ok := g.DecideCached(Input{Image: "127.0.0.1:5000/app:v1"}); !ok || d.Allowed || !strings.Contains(d.Reason, "digest") {
		t.Fatalf("no digest: %+v %v", d, ok)
	}
	if n := f.calls.Load(); n != 1 {
		t.Fatalf("verifier called %d times, want 1", n)
	}
}

// Prewarm caches the verdict for every rule the image can meet, so that a
// container of it in any namespace is decided from the cache.
func TestPrewarm(t *testing.T) {
	f := &fakes{verdict: verify.Verdict{Allowed: true, Reason: "signed"}}
	g := newGate(t, testPolicy+`
- pattern: "127.0.0.1:5000/fake/app:*"
  validator: fake
  namespaces: [team-a]
- pattern: "127.0.0.1:5000/fake/app:*"
  validator: fake
  namespaces: [team-b]
  mode: audit
`, f)
	image := "127.0.0.1:5000/fake/app:v1"
	n, err := g.Prewarm(context.Background(), image, dgst, "")
	if err != nil || n != 3 {
		t.Fatalf("Prewarm = %d, %v; want 3 rules (default, team-a, team-b)", n, err)
	}
	if c := f.calls.Load(); c != 3 {
		t.Fatalf("%d verifications, want 3", c)
	}
	for _, ns := range []string{"default", "team-a", "team-b", ""} {
		if _, ok := g.DecideCached(Input{Image: image, Digest: dgst, Namespace: ns}); !ok {
			t.Errorf("namespace %q: verdict not cached", ns)
		}
	}
	// Again: all cached, nothing verified.
	if _, err := g.Prewarm(context.Background(), image, dgst, ""); err != nil || f.calls.Load() != 3 {
		t.Fatalf("second Prewarm: %v, %d verifications", err, f.calls.Load())
	}
	if n, err := g.Prewarm(context.Background(), "ghcr.io/nobody/x:1", dgst, ""); err != nil || n != 0 {
		t.Fatalf("no rule: %d, %v", n, err)
	}
	if _, err := g.Prewarm(context.Background(), "sha256:"+strings.Repeat("a", 64), dgst, ""); err == nil {
		t.Fatal("a bare image ID was prewarmed")
	}
}
