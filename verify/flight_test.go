package verify

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// blocker is a verification that runs until released, counting how many of
// its kind run at once.
type blocker struct {
	release        chan struct{}
	started        atomic.Int32
	running, peak  atomic.Int32
	verdictAllowed bool
}

func newBlocker() *blocker { return &blocker{release: make(chan struct{}), verdictAllowed: true} }

func (b *blocker) verify(ctx context.Context) (Verdict, error) {
	b.started.Add(1)
	n := b.running.Add(1)
	defer b.running.Add(-1)
	for {
		p := b.peak.Load()
		if n <= p || b.peak.CompareAndSwap(p, n) {
			break
		}
	}
	select {
	case <-b.release:
		return Verdict{Allowed: b.verdictAllowed}, nil
	case <-ctx.Done():
		return Verdict{}, ctx.Err()
	}
}

// getAsync runs Get in the background; the channel yields its error.
func getAsync(c *Cache, ctx context.Context, key string, verify func(context.Context) (Verdict, error), groups ...string) <-chan error {
	ch := make(chan error, 1)
	go func() {
		_, err, _ := c.Get(ctx, key, verify, groups...)
		ch <- err
	}()
	return ch
}

// answer waits for a Get started by getAsync. The bound only detects a
// lookup that blocks instead of answering; it measures nothing.
func answer(t *testing.T, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("Get blocked; want an answer at once")
		return nil
	}
}

// expire gives up on key quickly, making its flight overdue.
func expire(t *testing.T, c *Cache, key string, verify func(context.Context) (Verdict, error), groups ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err, _ := c.Get(ctx, key, verify, groups...); !errors.Is(err, ErrPending) {
		t.Fatalf("first lookup of %s: err = %v, want ErrPending", key, err)
	}
}

// A tarpit must cost the runtime's NRI lock one wait, not one per create:
// once a caller gave up on a flight, the next caller of it, even with no
// deadline at all, is answered pending at once. Old main waited for each.
func TestFlightOverdueJoinAnswersAtOnce(t *testing.T) {
	c, _ := newTestCache(CacheOptions{})
	b := newBlocker()
	defer close(b.release)
	expire(t, c, "tarpit", b.verify, "registry evil")
	if err := answer(t, getAsync(c, context.Background(), "tarpit", b.verify, "registry evil")); !errors.Is(err, ErrPending) {
		t.Fatalf("join of an overdue flight: err = %v, want ErrPending", err)
	}
	if got := b.started.Load(); got != 1 {
		t.Fatalf("verifications started = %d, want 1 (joins start none)", got)
	}
	if s := c.Stats(); s.Shed != 1 || s.Pending != 2 {
		t.Fatalf("stats %+v, want Shed 1 and Pending 2", s)
	}
}

// A group with an overdue flight is tripped: a new key in it starts its
// verification but answers pending at once, and keys of other groups still
// wait for their verdicts. When the overdue flight ends, the group waits
// again.
func TestFlightTrippedGroupSheds(t *testing.T) {
	c, _ := newTestCache(CacheOptions{})
	tarpit := newBlocker()
	expire(t, c, "tarpit", tarpit.verify, "registry evil", "namespace a")

	next := newBlocker()
	if err := answer(t, getAsync(c, context.Background(), "next", next.verify, "registry evil", "namespace b")); !errors.Is(err, ErrPending) {
		t.Fatalf("new key of a tripped registry: err = %v, want ErrPending", err)
	}
	waitFor(t, func() bool { return next.started.Load() == 1 }) // it runs in the background
	close(next.release)
	waitFor(t, func() bool { _, _, ok := c.Cached("next"); return ok })

	good := newBlocker()
	ch := getAsync(c, context.Background(), "good", good.verify, "registry good", "namespace b")
	waitFor(t, func() bool { return good.started.Load() == 1 })
	select {
	case err := <-ch:
		t.Fatalf("a key of untripped groups answered before its verdict: %v", err)
	default:
	}
	close(good.release)
	if err := answer(t, ch); err != nil {
		t.Fatalf("untripped key: %v", err)
	}

	close(tarpit.release)
	waitFor(t, func() bool { _, _, ok := c.Cached("tarpit"); return ok })
	again := newBlocker()
	ch = getAsync(c, context.Background(), "again", again.verify, "registry evil")
	waitFor(t, func() bool { return again.started.Load() == 1 })
	select {
	case err := <-ch:
		t.Fatalf("the breaker stayed open after the overdue flight ended: %v", err)
	default:
	}
	close(again.release)
	if err := answer(t, ch); err != nil {
		t.Fatalf("after the breaker closed: %v", err)
	}
}

// One group cannot take every slot, the node's limit holds, and a
// verification that gets no slot in time says which limit kept it waiting.
func TestFlightLimits(t *testing.T) {
	c, _ := newTestCache(CacheOptions{MaxVerifications: 3, MaxPerGroup: 2, VerifyTimeout: time.Second})
	evil, other := newBlocker(), newBlocker()
	stubborn := func(ctx context.Context) (Verdict, error) {
		// Holds its slot past its deadline, as a validator stuck in a
		// read might.
		_, _ = evil.verify(context.WithoutCancel(ctx))
		return Verdict{Allowed: true}, nil
	}
	e1 := getAsync(c, context.Background(), "e1", stubborn, "registry evil")
	e2 := getAsync(c, context.Background(), "e2", stubborn, "registry evil")
	waitFor(t, func() bool { return evil.started.Load() == 2 })
	e3 := getAsync(c, context.Background(), "e3", stubborn, "registry evil")
	// e3 waits for a slot of its group; another group's key gets the
	// node's third slot.
	otherErr := getAsync(c, context.Background(), "o1", other.verify, "registry other")
	waitFor(t, func() bool { return other.started.Load() == 1 })
	close(other.release)
	if err := answer(t, otherErr); err != nil {
		t.Fatalf("other group: %v", err)
	}
	err := answer(t, e3)
	if err == nil || !strings.Contains(err.Error(), "not started within") || !strings.Contains(err.Error(), "running for its registry or namespace (the limit)") {
		t.Fatalf("the evil key over its group's limit: err = %v, want it not started, naming the group's limit", err)
	}
	if p := evil.peak.Load(); p != 2 {
		t.Fatalf("evil verifications at once = %d, want the group's limit 2", p)
	}
	close(evil.release)
	for _, ch := range []<-chan error{e1, e2} {
		if err := answer(t, ch); err != nil {
			t.Fatalf("a running evil key: %v", err)
		}
	}
	assertIdle(t, c)
}

// MaxFlights bounds the work queued on the node; a lookup over it is
// refused at once and not cached, so its retry tries again.
func TestFlightMaxFlights(t *testing.T) {
	c, _ := newTestCache(CacheOptions{MaxFlights: 2})
	b := newBlocker()
	expire(t, c, "a", b.verify)
	expire(t, c, "b", b.verify)
	_, err, _ := c.Get(context.Background(), "c", b.verify)
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("third flight: err = %v, want ErrBusy", err)
	}
	close(b.release)
	waitFor(t, func() bool { return c.Len() == 2 })
	if v, err, hit := c.Get(context.Background(), "c", b.verify); err != nil || hit || !v.Allowed {
		t.Fatalf("retry after the flights ended: %+v %v hit %v, want a fresh allow", v, err, hit)
	}
	if c.Stats().Busy != 1 {
		t.Fatalf("Busy = %d, want 1", c.Stats().Busy)
	}
}

// A validator's panic denies its image with an error and gives its slot
// back; the node's gate goes on.
func TestFlightPanicIsAnError(t *testing.T) {
	c, _ := newTestCache(CacheOptions{MaxVerifications: 1})
	_, err, _ := c.Get(context.Background(), "boom", func(context.Context) (Verdict, error) { panic("nil map") }, "registry r")
	if err == nil || !strings.Contains(err.Error(), "validator failed unexpectedly") {
		t.Fatalf("err = %v, want the panic as an error", err)
	}
	v, err, _ := c.Get(context.Background(), "fine", func(context.Context) (Verdict, error) { return Verdict{Allowed: true}, nil }, "registry r")
	if err != nil || !v.Allowed {
		t.Fatalf("after a panic: %+v %v, want allow (the slot was given back)", v, err)
	}
	assertIdle(t, c)
}

// assertIdle checks that the scheduler forgot every group once its work
// ended: an attacker names groups without end (every host is one).
func assertIdle(t *testing.T, c *Cache) {
	t.Helper()
	waitFor(t, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.flights) == 0 && c.sched.running == 0 && len(c.sched.groups) == 0
	})
}

// A tenant whose namespace's slots are taken asks first for another
// tenant's image: the flight queues behind the tenant's own work and goes
// overdue. The other tenant's lookup must run it under its own slots, not
// inherit the overdue mark. On the previous commit it answered pending at
// once, then "not started within".
func TestFlightSponsorRunsQueuedFlight(t *testing.T) {
	c, _ := newTestCache(CacheOptions{MaxPerGroup: 1})
	hog := newBlocker()
	defer close(hog.release)
	_ = getAsync(c, context.Background(), "hog", hog.verify, "namespace attacker")
	waitFor(t, func() bool { return hog.started.Load() == 1 })
	victim := newBlocker()
	close(victim.release)
	expire(t, c, "shared", victim.verify, "registry good", "namespace attacker")
	if victim.started.Load() != 0 {
		t.Fatal("the queued flight started under the attacker's full namespace")
	}
	v, err := answerV(t, c, "shared", victim.verify, "registry good", "namespace victim")
	if err != nil || !v.Allowed {
		t.Fatalf("the victim's lookup: %+v %v, want its verdict", v, err)
	}
}

// A group whose lookups keep waiting long (a registry answering just under
// the deadline is never overdue) is tripped once it owes more than
// slowBurst; other groups still wait for their verdicts. On the previous
// commit every such lookup waited.
func TestFlightSlowGroupTrips(t *testing.T) {
	c, _ := newTestCache(CacheOptions{})
	slow := func(context.Context) (Verdict, error) {
		time.Sleep(slowGrace + 400*time.Millisecond)
		return Verdict{}, errors.New("denied slowly")
	}
	for i := 0; ; i++ {
		if i > 10 {
			t.Fatal("never tripped")
		}
		_, err, _ := c.Get(context.Background(), fmt.Sprint("slow", i), slow, "registry slow", "namespace a")
		if errors.Is(err, ErrPending) {
			if i < 2 {
				t.Fatalf("tripped after %d waits of 400 ms over the grace, want more than %v owed first", i, slowBurst)
			}
			break
		}
	}
	v, err, _ := c.Get(context.Background(), "fast", func(context.Context) (Verdict, error) { return Verdict{Allowed: true}, nil }, "registry good", "namespace b")
	if err != nil || !v.Allowed {
		t.Fatalf("another group: %+v %v, want its verdict", v, err)
	}
}

// One group cannot fill the node's queue: past MaxFlightsPerGroup its new
// lookups are busy, and other groups' are not. On the previous commit one
// namespace could take all 1024.
func TestFlightMaxFlightsPerGroup(t *testing.T) {
	c, _ := newTestCache(CacheOptions{MaxFlightsPerGroup: 2})
	b := newBlocker()
	defer close(b.release)
	expire(t, c, "a1", b.verify, "namespace a")
	expire(t, c, "a2", b.verify, "namespace a")
	if _, err, _ := c.Get(context.Background(), "a3", b.verify, "namespace a"); !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "for namespace a (2, the limit)") {
		t.Fatalf("third flight of a group: %v, want ErrBusy naming the group's limit", err)
	}
	if err := answer(t, getAsync(c, context.Background(), "b1", func(context.Context) (Verdict, error) { return Verdict{Allowed: true}, nil }, "namespace b")); err != nil {
		t.Fatalf("another group: %v", err)
	}
}

func answerV(t *testing.T, c *Cache, key string, verify func(context.Context) (Verdict, error), groups ...string) (Verdict, error) {
	t.Helper()
	type res struct {
		v   Verdict
		err error
	}
	ch := make(chan res, 1)
	go func() { v, err, _ := c.Get(context.Background(), key, verify, groups...); ch <- res{v, err} }()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-time.After(5 * time.Second):
		t.Fatal("Get blocked")
		return Verdict{}, nil
	}
}
