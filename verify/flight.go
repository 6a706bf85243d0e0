package verify

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// ErrBusy is returned by Cache.Get when too many verifications are running
// or waiting already, on the node or in one of the lookup's groups: the
// lookup starts none and is not cached, so a retry tries again.
var ErrBusy = errors.New("too many verifications in flight")

// ErrAbandoned is the cause a caller cancels its context with when it no
// longer needs the answer (another answer settled its question): Get then
// answers ErrPending without marking the verification overdue, since
// nobody waited for it in vain.
var ErrAbandoned = errors.New("answer no longer needed")

type offLockKey struct{}

// OffLock marks ctx as a caller that holds no runtime lock while it waits
// (prewarm, which verifies images as containerd pulls them): its waits
// are not charged as slowness (see slowBurst), which is about the NRI
// lock's time, and so cannot trip a group that its wait shares with
// pods.
func OffLock(ctx context.Context) context.Context { return context.WithValue(ctx, offLockKey{}, true) }

func offLock(ctx context.Context) bool { v, _ := ctx.Value(offLockKey{}).(bool); return v }

// The runtime serialises every NRI request on the node, so time one create
// spends waiting for a verification is time every other pod waits too. A
// hostile registry that answers slowly must therefore cost the node little
// lock time, however its tenant retries. Get sheds load in three ways:
//
//   - a flight is overdue once a caller has given up on it (ErrPending);
//     later callers of the same key get ErrPending at once, without waiting;
//   - a group (the gate's groups are the image's registry host and the
//     pod's namespace) is tripped while it has an overdue flight, or while
//     its callers have waited more than slowBurst for verdicts recently (the debt drains at slowRefill: a registry answering just
//     under the deadline is never overdue, but is slow): a new key in a
//     tripped group starts its verification in the background and answers
//     ErrPending at once;
//   - at most MaxFlightsPerGroup verifications are running or waiting per
//     group, MaxFlights on the node; past that, ErrBusy.
//
// The verdict is cached when it comes, so kubelet's retry finds it. A
// flight is started under its first caller's groups, but may run under any
// caller's (its sponsors): a tenant who asks first for another tenant's
// image, while its own namespace's slots are taken, must not hold that
// image's verification in its own queue.

// Slowness budget per group: the part of each wait beyond slowGrace is
// owed, and a group that owes more than slowBurst is tripped; the debt is
// paid back at slowRefill seconds per second. A tenant's slow registry then
// holds the NRI lock for about slowBurst plus one decision, then for a
// tenth of the time.
const (
	slowGrace  = 100 * time.Millisecond
	slowBurst  = time.Second
	slowRefill = 0.1
	// maxSponsors bounds the group sets one flight remembers.
	maxSponsors = 8
)

// flight is one verification of one key, running or waiting for a slot.
type flight struct {
	done chan struct{}
	e    entry    // set before done is closed
	cost []string // the groups it counts against: its first caller's
	// Guarded by Cache.mu:
	sponsors [][]string // group sets whose slots may run it
	slot     []string   // the set it runs under, once started
	started  bool
	overdue  bool
}

// Get answers from the cache, or joins or starts the verification for key
// and waits for it until ctx is done (then ErrPending). The verification
// counts against each of groups (see the limits in CacheOptions). It
// answers ErrPending without waiting when the verification is overdue or
// one of groups is tripped (see above), and ErrBusy past MaxFlights or
// MaxFlightsPerGroup. hit says whether the answer came from the cache
// without waiting.
func (c *Cache) Get(ctx context.Context, key string, verify func(context.Context) (Verdict, error), groups ...string) (v Verdict, err error, hit bool) {
	c.mu.Lock()
	if e, ok := c.entries[key]; ok && c.now().Before(e.expires) {
		c.stats.Hits++
		c.mu.Unlock()
		return e.verdict, e.err, true
	}
	c.stats.Misses++
	f, sponsored := c.flights[key], false
	if f == nil {
		if f, err = c.startLocked(ctx, key, verify, groups); err != nil {
			c.stats.Busy++
			c.mu.Unlock()
			return Verdict{}, err, false
		}
	} else if !f.started && len(f.sponsors) < maxSponsors && !slices.ContainsFunc(f.sponsors, func(s []string) bool { return slices.Equal(s, groups) }) {
		// Waiting for a slot: this caller's groups may run it now.
		f.sponsors = append(f.sponsors, groups)
		c.sched.wakeLocked()
		sponsored = true
	}
	if f.overdue && !sponsored {
		c.stats.Pending++
		c.stats.Shed++
		c.mu.Unlock()
		return Verdict{}, ErrPending, false
	}
	c.mu.Unlock()
	return c.wait(ctx, f)
}

// startLocked registers and starts the flight for key, or says which limit
// keeps it from starting.
func (c *Cache) startLocked(ctx context.Context, key string, verify func(context.Context) (Verdict, error), groups []string) (*flight, error) {
	if len(c.flights) >= c.opts.MaxFlights {
		return nil, fmt.Errorf("%w on this node (%d, the limit): a retry will try again", ErrBusy, c.opts.MaxFlights)
	}
	if g := c.sched.crowdedLocked(groups); g != "" {
		return nil, fmt.Errorf("%w for %s (%d, the limit): a retry will try again", ErrBusy, g, c.opts.MaxFlightsPerGroup)
	}
	f := &flight{done: make(chan struct{}), cost: groups, sponsors: [][]string{groups}}
	c.flights[key] = f
	c.sched.flightsLocked(groups, 1)
	if c.sched.trippedLocked(groups, c.now()) {
		c.overdueLocked(f)
	}
	go c.run(ctx, key, f, verify)
	return f, nil
}

// wait waits for f until ctx ends, then marks it overdue. Time waited for
// a verdict beyond the grace is owed by f's groups (see slowBurst).
func (c *Cache) wait(ctx context.Context, f *flight) (Verdict, error, bool) {
	start := time.Now()
	var done bool
	select {
	case <-f.done:
		done = true
	case <-ctx.Done():
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-f.done: // it ended while we took the lock
		done = true
	default:
	}
	if done {
		// A wait that ends in a verdict is charged; one that ends at the
		// deadline makes the flight overdue instead, which trips its
		// groups while it lasts.
		if !offLock(ctx) {
			c.sched.chargeLocked(f.cost, time.Since(start)-slowGrace, c.now())
		}
		return f.e.verdict, f.e.err, false
	}
	c.stats.Pending++
	if !errors.Is(context.Cause(ctx), ErrAbandoned) {
		c.overdueLocked(f)
	}
	return Verdict{}, ErrPending, false
}

// overdueLocked marks f overdue, tripping its groups until it ends.
func (c *Cache) overdueLocked(f *flight) {
	if !f.overdue {
		f.overdue = true
		c.sched.tripLocked(f.cost, 1)
	}
}

// run verifies key in the background, detached from the caller that
// started it: a caller giving up does not waste the work.
func (c *Cache) run(ctx context.Context, key string, f *flight, verify func(context.Context) (Verdict, error)) {
	vctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opts.VerifyTimeout)
	defer cancel()
	v, err := c.runSlot(vctx, f, verify)

	c.mu.Lock()
	defer c.mu.Unlock()
	f.e = c.storeLocked(key, v, err)
	delete(c.flights, key)
	c.sched.flightsLocked(f.cost, -1)
	if f.overdue {
		c.sched.tripLocked(f.cost, -1)
	}
	close(f.done)
}

// runSlot waits for a slot, then verifies. A validator's panic becomes an
// error: it must deny one image, not stop the gate of the whole node.
func (c *Cache) runSlot(ctx context.Context, f *flight, verify func(context.Context) (Verdict, error)) (v Verdict, err error) {
	start := time.Now()
	if err := c.acquire(ctx, f); err != nil {
		return Verdict{}, fmt.Errorf("not started within %s: %w", time.Since(start).Round(time.Millisecond), err)
	}
	defer c.release(f)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("validator failed unexpectedly (a bug; please report it): %v", r)
		}
	}()
	c.count(func(s *CacheStats) { s.Verifications++ })
	return verify(ctx)
}

// acquire takes a slot for f under the first of its sponsors' group sets
// that has one, waiting for one until ctx ends.
func (c *Cache) acquire(ctx context.Context, f *flight) error {
	for {
		c.mu.Lock()
		var full string
		for _, set := range f.sponsors {
			if full = c.sched.fullLocked(set); full == "" {
				c.sched.takeLocked(set, 1)
				f.slot, f.started = set, true
				c.mu.Unlock()
				return nil
			}
		}
		wake := c.sched.wake
		c.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", full, ctx.Err())
		}
	}
}

func (c *Cache) release(f *flight) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sched.takeLocked(f.slot, -1)
	c.sched.wakeLocked()
}
