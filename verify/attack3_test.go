package verify

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestAttack3SponsorHoldsVictimSlots: the attacker's namespace has its 4
// slots taken by its own tarpit verifications on hosts t0..t3, and 4 more
// (hosts t4..t7) queued behind them. Those 4 queued keys are copies of the
// victim's volume image (same digest, the attacker's repositories): when
// the victim's volume is decided, its names are looked up side by side in
// the VICTIM's namespace, so the victim's create joins each queued flight
// as a sponsor, and they run under the victim's namespace's slots, which
// they hold until they time out, after the victim's create has returned
// (its signed name won). The victim's next verification then waits for a
// slot until its deadline.
func TestAttack3SponsorHoldsVictimSlots(t *testing.T) {
	c := NewCache(CacheOptions{MaxVerifications: 16, MaxPerGroup: 4, VerifyTimeout: 3 * time.Second})
	tarpit := func(ctx context.Context) (Verdict, error) { <-ctx.Done(); return Verdict{}, ctx.Err() }
	fast := func(context.Context) (Verdict, error) { return Verdict{Allowed: true}, nil }
	short := func(d time.Duration) context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		t.Cleanup(cancel)
		return ctx
	}
	// The attacker's 8 creates, each answered pending.
	for i := range 8 {
		_, err, _ := c.Get(short(20*time.Millisecond), fmt.Sprintf("copy%d", i), tarpit, fmt.Sprintf("registry t%d", i), "namespace attacker")
		t.Logf("attacker's copy%d: %v", i, err)
	}
	// The victim's volume: its signed name and the 4 queued copies, side by
	// side; the signed name answers, the rest are cancelled.
	vctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	for i := 4; i < 8; i++ {
		go func() {
			c.Get(vctx, fmt.Sprintf("copy%d", i), tarpit, fmt.Sprintf("registry t%d", i), "namespace victim")
			done <- struct{}{}
		}()
	}
	time.Sleep(20 * time.Millisecond)
	v, err, _ := c.Get(short(time.Second), "victim-signed", fast, "registry good", "namespace victim")
	t.Logf("victim's signed name: %+v %v", v, err)
	cancel()
	for range 4 {
		<-done
	}
	c.mu.Lock()
	st := c.sched.groups["namespace victim"]
	var running int
	if st != nil {
		running = st.running
	}
	c.mu.Unlock()
	t.Logf("the victim's namespace runs %d verifications (the attacker's copies)", running)
	// The victim's next, fast image.
	start := time.Now()
	v, err, _ = c.Get(short(500*time.Millisecond), "victim-next", fast, "registry good", "namespace victim")
	t.Logf("victim's next image: %+v %v after %v", v, err, time.Since(start).Round(time.Millisecond))
	if err != nil || running > 0 {
		t.Logf("HOLE (a residual in the threat model): the attacker's queued tarpit verifications ran under the victim's namespace slots (%d held), sponsored by the victim's volume fan-out; the victim's next image: %v", running, err)
	}
	// What must hold even so: the hold ends with the tarpits' verify
	// timeout; then the victim's next image gets its verdict and no slot
	// stays taken.
	waitFor(t, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.sched.groups["namespace victim"] == nil
	})
	if v, err, _ := c.Get(short(time.Second), "victim-after", fast, "registry good", "namespace victim"); err != nil || !v.Allowed {
		t.Errorf("after the tarpits' timeout the victim's image got %+v %v, want its verdict", v, err)
	}
}
