package gate

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/nri-image-verifier/nri-image-verifier/verify"
)

const attack3Policy = `
validators:
- name: sig
  type: static
  approve: true
policy:
- pattern: "*"
  validator: sig
`

// attack3Gate: "sig" holds 127.0.0.1:5001 (the attacker's tarpit) until
// the verification times out and allows anything else after slow.
func attack3Gate(t *testing.T, slow time.Duration) *Gate {
	t.Helper()
	pol, err := policy.Parse([]byte(attack3Policy))
	if err != nil {
		t.Fatal(err)
	}
	build := func(v *policy.Validator) (verify.Verifier, error) {
		return verify.VerifierFunc(func(ctx context.Context, s verify.Subject, _ policy.With) (verify.Verdict, error) {
			d := slow
			if strings.HasPrefix(s.Repository, "127.0.0.1:5001/") {
				d = time.Hour
			}
			select {
			case <-time.After(d):
				return verify.Verdict{Allowed: true, Reason: "signed"}, nil
			case <-ctx.Done():
				return verify.Verdict{}, ctx.Err()
			}
		}), nil
	}
	g, err := New(pol, build, verify.NewCache(verify.CacheOptions{VerifyTimeout: 3 * time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func dg(c string) string { return "sha256:" + strings.Repeat(c, 64) }

func decideWithin(g *Gate, d time.Duration, in Input) Decision {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return g.Decide(ctx, in)
}

// TestAttack3TripSpreadsToSharedRegistry: the attacker trips its own
// namespace with its tarpit (one create that times out), then asks for
// images of a registry everyone uses (any public image it can pull, a new
// digest each time). Each such flight is started overdue because the
// attacker's namespace is tripped, and an overdue flight trips all of its
// first caller's groups: the shared registry too, until the verification
// ends. Meanwhile every other tenant's new image of that registry is shed.
func TestAttack3TripSpreadsToSharedRegistry(t *testing.T) {
	for _, tarpit := range []bool{false, true} {
		t.Run("tarpit "+strconv.FormatBool(tarpit), func(t *testing.T) { tripSpreads(t, tarpit) })
	}
}

func tripSpreads(t *testing.T, tarpit bool) {
	g := attack3Gate(t, 400*time.Millisecond)
	cfg := dg("c")
	var d Decision
	// 1. The attacker's tarpit create: pending, its namespace tripped.
	if tarpit {
		d = decideWithin(g, 200*time.Millisecond, Input{Namespace: "attacker", Image: "127.0.0.1:5001/a/tarpit:v1", Digest: dg("1"), ConfigDigest: cfg})
		t.Logf("attacker's tarpit: pending=%v", d.Pending)
	}
	// 2. The attacker asks for a shared-registry image it has not asked for
	// before: shed at once, started overdue.
	d = decideWithin(g, 1300*time.Millisecond, Input{Namespace: "attacker", Image: "127.0.0.1:5000/library/public:v1", Digest: dg("2"), ConfigDigest: cfg})
	t.Logf("attacker's shared-registry image: pending=%v latency=%s", d.Pending, d.Latency)
	// 3. The victim, another namespace, a new image of the shared registry
	// that answers in 400 ms: well within the deadline.
	d = decideWithin(g, 1300*time.Millisecond, Input{Namespace: "victim", Image: "127.0.0.1:5000/victim/app:v2", Digest: dg("3"), ConfigDigest: cfg})
	t.Logf("victim's new image: allowed=%v pending=%v latency=%s reason=%q", d.Allowed, d.Pending, d.Latency, d.Reason)
	switch {
	case !tarpit && !d.Allowed:
		t.Errorf("without the tarpit the victim's image is shed")
	case tarpit && !d.Allowed:
		t.Logf("HOLE: the attacker's tripped namespace spread the trip to the shared registry 127.0.0.1:5000; the victim's signed image was shed")
	}
}

// TestAttack3PrewarmChargesVictim: a wait that ends in a verdict is
// charged to the flight's cost, its first caller's groups, whoever waits.
// Prewarm (any tenant's pull of the victim's repository triggers it, by any
// tag or digest) joins the victim's running flight and waits up to its
// timeout, off the NRI path: that wait is charged to the VICTIM's
// namespace.
func TestAttack3PrewarmChargesVictim(t *testing.T) {
	for _, prewarms := range []int{0, 3} {
		t.Run(strconv.Itoa(prewarms)+" prewarms", func(t *testing.T) { prewarmChargesVictim(t, prewarms) })
	}
}

func prewarmChargesVictim(t *testing.T, prewarms int) {
	g := attack3Gate(t, 900*time.Millisecond)
	cfg := dg("c")
	done := make(chan Decision)
	go func() {
		done <- decideWithin(g, 1300*time.Millisecond, Input{Namespace: "victim", Image: "127.0.0.1:5000/victim/app:v1", Digest: dg("5"), ConfigDigest: cfg})
	}()
	time.Sleep(20 * time.Millisecond)
	// The attacker pulls 127.0.0.1:5000/victim/app@<digest>: containerd's
	// image event prewarms it, several times (one per event: create,
	// update; each pull of another tag of the same digest).
	for range prewarms {
		go g.Prewarm(context.Background(), "127.0.0.1:5000/victim/app:other", dg("5"), cfg)
	}
	d := <-done
	t.Logf("victim's create: allowed=%v latency=%s", d.Allowed, d.Latency)
	time.Sleep(50 * time.Millisecond)
	// The victim's next new image, fast this time? No: the slow one again
	// (its registry is as it is); with the prewarm waits charged it is shed.
	// On another registry, so that only the namespace's debt counts.
	d = decideWithin(g, 1300*time.Millisecond, Input{Namespace: "victim", Image: "127.0.0.1:5002/victim/app:v3", Digest: dg("6"), ConfigDigest: cfg})
	t.Logf("victim's next image (another registry): allowed=%v pending=%v latency=%s", d.Allowed, d.Pending, d.Latency)
	switch {
	case prewarms == 0 && !d.Allowed:
		t.Errorf("without prewarms the victim's own 0.8 s of debt tripped its namespace")
	case prewarms > 0 && !d.Allowed:
		// Prewarm waits hold no lock and are not charged (verify.OffLock).
		t.Errorf("%d prewarm waits (triggered by the attacker's pulls of the victim's repository) were charged to the victim's namespace, which is now tripped", prewarms)
	}
}

// TestAttack3PrewarmKeyMatchesHook: a prewarm under one tag serves the
// hook's decision under another tag or a digest reference of the same
// repository, in any namespace; a copy in another repository shares
// nothing (its signatures are looked up apart).
func TestAttack3PrewarmKeyMatchesHook(t *testing.T) {
	f := &fakes{verdict: verify.Verdict{Allowed: true, Reason: "signed"}}
	g := newGate(t, testPolicy, f)
	if _, err := g.Prewarm(context.Background(), "127.0.0.1:5000/fake/app:v1", dgst, dg("c")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		image, ns string
		hit       bool
	}{
		{"127.0.0.1:5000/fake/app:v1", "shop", true},
		{"127.0.0.1:5000/fake/app:other", "tenant-b", true},
		{"127.0.0.1:5000/fake/app@" + dgst, "shop", true},
		{"127.0.0.1:5000/fake/app:v1@" + dgst, "shop", true},
		{"127.0.0.1:5000/fake/copy:v1", "shop", false},
		{"127.0.0.1:5000/FAKE/app:v1", "shop", false}, // not a valid name: no rule
	} {
		d, ok := g.DecideCached(Input{Namespace: tc.ns, Image: tc.image, Digest: dgst, ConfigDigest: dg("c")})
		hit := ok && d.CacheHit
		if hit != tc.hit {
			t.Errorf("%s in %s: cache hit %v (%+v), want %v", tc.image, tc.ns, hit, d, tc.hit)
		}
	}
	// Another config: no hit.
	if d, ok := g.DecideCached(Input{Namespace: "shop", Image: "127.0.0.1:5000/fake/app:v1", Digest: dgst, ConfigDigest: dg("d")}); ok && d.CacheHit {
		t.Errorf("another config served the prewarmed verdict")
	}
	if n := f.calls.Load(); n != 1 {
		t.Errorf("%d verifications, want 1", n)
	}
}

// TestAttack3PrewarmSlowTripsSharedRegistry: with --prewarm, the attacker
// pulls its own image from a registry everyone uses (its own repository
// there), whose verification is slow but within the verify timeout (big
// or many signature manifests it pushed, 2.5 s here). Prewarm waits for
// the verdict off the NRI path, yet its wait is charged to the flight's
// groups, the shared registry: 2.4 s owed trips it, and another tenant's
// new image from that registry is shed although nothing held the NRI lock.
func TestAttack3PrewarmSlowTripsSharedRegistry(t *testing.T) {
	pol, err := policy.Parse([]byte(attack3Policy))
	if err != nil {
		t.Fatal(err)
	}
	build := func(v *policy.Validator) (verify.Verifier, error) {
		return verify.VerifierFunc(func(ctx context.Context, s verify.Subject, _ policy.With) (verify.Verdict, error) {
			d := 10 * time.Millisecond
			if strings.Contains(s.Repository, "/attacker/") {
				d = 2500 * time.Millisecond
			}
			select {
			case <-time.After(d):
				return verify.Verdict{Allowed: false, Reason: "no signature"}, nil
			case <-ctx.Done():
				return verify.Verdict{}, ctx.Err()
			}
		}), nil
	}
	g, err := New(pol, build, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Prewarm(context.Background(), "127.0.0.1:5000/attacker/slow:v1", dg("7"), dg("c")); err != nil {
		t.Fatal(err)
	}
	d := decideWithin(g, 1300*time.Millisecond, Input{Namespace: "victim", Image: "127.0.0.1:5000/victim/app:v9", Digest: dg("8"), ConfigDigest: dg("c")})
	t.Logf("victim's new image from the shared registry after the attacker's prewarm: allowed=%v pending=%v reason=%s", d.Allowed, d.Pending, d.Reason)
	// The fake answers "no signature" for every image: what matters is
	// that the victim got its verdict, not a pending shed.
	if d.Pending {
		t.Errorf("a prewarm wait (off the NRI path) was charged to the shared registry and tripped it for every tenant: %s", d.Reason)
	}
}
