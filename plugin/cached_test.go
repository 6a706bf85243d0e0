package plugin

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/nri-image-verifier/nri-image-verifier/gate"
)

// cachedDecider answers from "memory" when cached is set.
type cachedDecider struct {
	fakeDecider
	cached  atomic.Bool
	fastHit atomic.Int32
}

func (c *cachedDecider) DecideCached(in gate.Input) (gate.Decision, bool) {
	if !c.cached.Load() {
		return gate.Decision{}, false
	}
	c.fastHit.Add(1)
	return gate.Decision{Allowed: true, Verdict: gate.VerdictAllow, Reason: "cached"}, true
}

// A verdict the Decider has in memory is taken at once; otherwise Decide
// runs under the deadline as ever. Reporting and the memo are the same.
func TestCachedDecisionSkipsDecide(t *testing.T) {
	dec := &cachedDecider{fakeDecider: fakeDecider{fn: allow}}
	rep := &fakeReporter{}
	p, err := New(Config{Logger: testLogger(t)}, dec, rep)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, _, err := p.CreateContainer(ctx, testPod(), testContainer("c1")); err != nil {
		t.Fatal(err)
	}
	if in, _ := dec.calls(); len(in) != 1 || dec.fastHit.Load() != 0 {
		t.Fatalf("not cached: Decide called %d times, fast path %d", len(in), dec.fastHit.Load())
	}

	dec.cached.Store(true)
	if _, _, err := p.CreateContainer(ctx, testPod(), testContainer("c2")); err != nil {
		t.Fatal(err)
	}
	// The validation of c2 reuses its decision.
	if err := p.check(ctx, testPod(), testContainer("c2")); err != nil {
		t.Fatal(err)
	}
	if in, _ := dec.calls(); len(in) != 1 || dec.fastHit.Load() != 1 {
		t.Fatalf("cached: Decide called %d times, fast path %d, want 1 and 1", len(in), dec.fastHit.Load())
	}
	if r := rep.reports(); len(r) != 2 || r[1].Reason != "cached" {
		t.Fatalf("reports %+v, want two, the second from the cache", r)
	}

	// Without a digest and with a Resolver, the Resolver is asked first,
	// then the Decider.
	p.cfg.Resolver = fakeResolver{"127.0.0.1:5000/resolved:v1", testDigest, testConfig}
	ctr := testContainer("c3")
	ctr.Image = nil
	dec.cached.Store(false)
	p.CreateContainer(ctx, testPod(), ctr)
	in, _ := dec.calls()
	if len(in) != 2 || in[1].Digest != testDigest {
		t.Fatalf("Decide calls %+v, want a second one with the resolved digest", in)
	}
}
