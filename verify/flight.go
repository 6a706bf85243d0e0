package verify

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrBusy is returned by Cache.Get when MaxFlights verifications are
// running or waiting already: the lookup starts none and is not cached, so
// a retry tries again.
var ErrBusy = errors.New("too many verifications in flight on this node")

// The runtime serialises every NRI request on the node, so time one create
// spends waiting for a verification is time every other pod waits too. A
// hostile registry that answers slowly (a tarpit) must therefore cost the
// node one wait, not one per create. Get sheds load in two ways:
//
//   - a flight is overdue once a caller has given up on it (ErrPending);
//     later callers of the same key get ErrPending at once, without waiting;
//   - a group (the gate's groups are the image's registry host and the
//     pod's namespace) with an overdue flight is tripped: a new key in it
//     starts its verification in the background and answers ErrPending at
//     once. The breaker closes when the group's overdue flights end.
//
// The verdict is cached when it comes, so kubelet's retry finds it, and no
// wait is shed for keys outside the tripped groups: one tenant's tarpit
// delays neither another tenant's pods nor images from other registries.

// flight is one verification of one key, running or waiting for a slot.
type flight struct {
	done    chan struct{}
	e       entry // set before done is closed
	groups  []string
	overdue bool // guarded by Cache.mu
}

// Get answers from the cache, or joins or starts the verification for key
// and waits for it until ctx is done (then ErrPending). The verification
// counts against each of groups (see the limits in CacheOptions). It
// answers ErrPending without waiting when the verification is overdue or
// one of groups is tripped (see above), and ErrBusy when the node has
// MaxFlights verifications in flight. hit says whether the answer came from
// the cache without waiting.
func (c *Cache) Get(ctx context.Context, key string, verify func(context.Context) (Verdict, error), groups ...string) (v Verdict, err error, hit bool) {
	c.mu.Lock()
	if e, ok := c.entries[key]; ok && c.now().Before(e.expires) {
		c.stats.Hits++
		c.mu.Unlock()
		return e.verdict, e.err, true
	}
	c.stats.Misses++
	f := c.flights[key]
	if f == nil {
		if len(c.flights) >= c.opts.MaxFlights {
			c.stats.Busy++
			c.mu.Unlock()
			return Verdict{}, fmt.Errorf("%w (%d, the limit): a retry will try again", ErrBusy, c.opts.MaxFlights), false
		}
		f = &flight{done: make(chan struct{}), groups: groups}
		c.flights[key] = f
		if c.sched.trippedLocked(groups) {
			c.overdueLocked(f)
		}
		go c.run(ctx, key, f, verify)
	}
	if f.overdue {
		c.stats.Pending++
		c.stats.Shed++
		c.mu.Unlock()
		return Verdict{}, ErrPending, false
	}
	c.mu.Unlock()

	select {
	case <-f.done:
		return f.e.verdict, f.e.err, false
	case <-ctx.Done():
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-f.done: // it ended while we took the lock
		return f.e.verdict, f.e.err, false
	default:
	}
	c.stats.Pending++
	c.overdueLocked(f)
	return Verdict{}, ErrPending, false
}

// overdueLocked marks f overdue, tripping its groups until it ends.
func (c *Cache) overdueLocked(f *flight) {
	if !f.overdue {
		f.overdue = true
		c.sched.tripLocked(f.groups, 1)
	}
}

// run verifies key in the background, detached from the caller that
// started it: a caller giving up does not waste the work.
func (c *Cache) run(ctx context.Context, key string, f *flight, verify func(context.Context) (Verdict, error)) {
	vctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opts.VerifyTimeout)
	defer cancel()
	v, err := c.runSlot(vctx, f.groups, verify)

	c.mu.Lock()
	defer c.mu.Unlock()
	f.e = c.storeLocked(key, v, err)
	delete(c.flights, key)
	if f.overdue {
		c.sched.tripLocked(f.groups, -1)
	}
	close(f.done)
}

// runSlot waits for a slot, then verifies. A validator's panic becomes an
// error: it must deny one image, not stop the gate of the whole node.
func (c *Cache) runSlot(ctx context.Context, groups []string, verify func(context.Context) (Verdict, error)) (v Verdict, err error) {
	start := time.Now()
	if err := c.acquire(ctx, groups); err != nil {
		return Verdict{}, fmt.Errorf("not started within %s: %w", time.Since(start).Round(time.Millisecond), err)
	}
	defer c.release(groups)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("validator failed unexpectedly (a bug; please report it): %v", r)
		}
	}()
	c.count(func(s *CacheStats) { s.Verifications++ })
	return verify(ctx)
}

// acquire takes a slot for a verification in groups, waiting for one until
// ctx ends.
func (c *Cache) acquire(ctx context.Context, groups []string) error {
	for {
		c.mu.Lock()
		full := c.sched.fullLocked(groups)
		if full == "" {
			c.sched.takeLocked(groups, 1)
			c.mu.Unlock()
			return nil
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

func (c *Cache) release(groups []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sched.takeLocked(groups, -1)
	close(c.sched.wake) // wake every waiter; each checks its own groups
	c.sched.wake = make(chan struct{})
}

// scheduler counts running verifications, on the node and per group, and
// overdue ones per group. Cache.mu guards it.
type scheduler struct {
	max, perGroup int
	running       int
	groups        map[string]*groupState
	wake          chan struct{}
}

type groupState struct{ running, overdue int }

func (s *scheduler) init(maxRunning, perGroup int) {
	s.max, s.perGroup = maxRunning, perGroup
	s.groups = map[string]*groupState{}
	s.wake = make(chan struct{})
}

// fullLocked names the limit that keeps a verification in groups from
// starting now, or returns "".
func (s *scheduler) fullLocked(groups []string) string {
	if s.running >= s.max {
		return fmt.Sprintf("%d verifications running on the node (the limit)", s.running)
	}
	for _, g := range groups {
		if st := s.groups[g]; st != nil && st.running >= s.perGroup {
			return fmt.Sprintf("%d verifications running for %s (the limit)", st.running, g)
		}
	}
	return ""
}

func (s *scheduler) takeLocked(groups []string, n int) {
	s.running += n
	s.update(groups, func(st *groupState) { st.running += n })
}

func (s *scheduler) tripLocked(groups []string, n int) {
	s.update(groups, func(st *groupState) { st.overdue += n })
}

func (s *scheduler) trippedLocked(groups []string) bool {
	for _, g := range groups {
		if st := s.groups[g]; st != nil && st.overdue > 0 {
			return true
		}
	}
	return false
}

// update applies f to each group's state, dropping states back at zero so
// that the map holds only groups with work (an attacker can name groups
// without end: every registry host is one).
func (s *scheduler) update(groups []string, f func(*groupState)) {
	for _, g := range groups {
		st := s.groups[g]
		if st == nil {
			st = &groupState{}
			s.groups[g] = st
		}
		f(st)
		if st.running == 0 && st.overdue == 0 {
			delete(s.groups, g)
		}
	}
}
