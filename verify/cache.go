package verify

import (
	"errors"
	"sync"
	"time"
)

// ErrPending is returned by Cache.Get when the caller's context ended before
// the verification finished. The verification goes on in the background and
// its result is cached, so a retry (kubelet retries a failed create on its
// next pod sync) finds it.
var ErrPending = errors.New("verification still running")

// CacheOptions bound how long answers are kept and how much verification
// runs at once.
type CacheOptions struct {
	// PositiveTTL keeps an allow verdict.
	PositiveTTL time.Duration
	// NegativeTTL keeps a deny verdict (a signature may be added later).
	NegativeTTL time.Duration
	// ErrorTTL keeps a transient error (registry down) only briefly, so that
	// a retry soon tries again, while a burst of creates does not hammer a
	// failing registry.
	ErrorTTL time.Duration
	// VerifyTimeout bounds one background verification, from the moment it
	// is asked for (time spent waiting for a slot counts).
	VerifyTimeout time.Duration
	// MaxEntries bounds memory; when full, expired entries go first, then
	// arbitrary ones.
	MaxEntries int
	// MaxVerifications bounds the verifications running at once on the
	// node; more wait for a slot. Each holds registry responses in memory,
	// so this bounds what hostile registries can make the daemon hold.
	MaxVerifications int
	// MaxPerGroup bounds the verifications running at once in one group
	// (the gate's groups are a registry host and a namespace), so one
	// tenant or one registry cannot take every slot.
	MaxPerGroup int
	// MaxFlights bounds verifications running or waiting for a slot; a
	// lookup that would start one more is refused at once with ErrBusy.
	MaxFlights int
	// MaxFlightsPerGroup is MaxFlights for one group, so that one tenant
	// cannot take the node's whole queue.
	MaxFlightsPerGroup int
}

// DefaultCacheOptions are sane defaults for a node.
func DefaultCacheOptions() CacheOptions {
	return CacheOptions{
		PositiveTTL:        time.Hour,
		NegativeTTL:        time.Minute,
		ErrorTTL:           5 * time.Second,
		VerifyTimeout:      30 * time.Second,
		MaxEntries:         50000,
		MaxVerifications:   16,
		MaxPerGroup:        4,
		MaxFlights:         1024,
		MaxFlightsPerGroup: 64,
	}
}

type entry struct {
	verdict Verdict
	err     error
	expires time.Time
}

// Cache holds verdicts keyed by (digest, rule, policy version) and runs one
// verification per key at a time, detached from the caller so that a
// caller giving up does not waste the work (see flight.go).
type Cache struct {
	opts CacheOptions
	now  func() time.Time

	mu      sync.Mutex
	entries map[string]entry
	flights map[string]*flight
	sched   scheduler
	stats   CacheStats
}

// CacheStats counts lookups, for metrics and benchmarks.
type CacheStats struct {
	Hits, Misses, Verifications, Pending uint64
	// Shed counts lookups answered pending at once, without waiting: the
	// verification they need is already overdue, or one of its groups has
	// an overdue one (see Get).
	Shed uint64
	// Busy counts lookups refused because MaxFlights verifications were
	// running or waiting.
	Busy uint64
}

// NewCache returns an empty cache. Zero option fields take the defaults.
func NewCache(opts CacheOptions) *Cache {
	def := DefaultCacheOptions()
	orDefault(&opts.PositiveTTL, def.PositiveTTL)
	orDefault(&opts.NegativeTTL, def.NegativeTTL)
	orDefault(&opts.ErrorTTL, def.ErrorTTL)
	orDefault(&opts.VerifyTimeout, def.VerifyTimeout)
	orDefault(&opts.MaxEntries, def.MaxEntries)
	orDefault(&opts.MaxVerifications, def.MaxVerifications)
	orDefault(&opts.MaxPerGroup, def.MaxPerGroup)
	orDefault(&opts.MaxFlights, def.MaxFlights)
	orDefault(&opts.MaxFlightsPerGroup, def.MaxFlightsPerGroup)
	c := &Cache{opts: opts, now: time.Now, entries: map[string]entry{}, flights: map[string]*flight{}}
	c.sched.init(opts)
	return c
}

func orDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// Key builds a cache key. Every part that can change the answer is in it:
// the repository too, since signatures are looked up in it (two copies of
// one image share no verdict: an unsigned copy in a tenant's repository
// must not cache a deny, or start a tarpit flight, for the signed
// original), and the policy version, so that a reload invalidates old
// verdicts.
func Key(digest, configDigest, repository, rule, policyVersion string) string {
	return digest + "|" + configDigest + "|" + repository + "|" + rule + "|" + policyVersion
}

// Cached answers from the cache alone, never starting or waiting for a
// verification: ok is false when key has no live verdict (a miss is not
// counted, the Get that follows counts it).
func (c *Cache) Cached(key string) (v Verdict, err error, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok || !c.now().Before(e.expires) {
		return Verdict{}, nil, false
	}
	c.stats.Hits++
	return e.verdict, e.err, true
}

// storeLocked keeps the outcome of key's verification; the caller holds mu.
func (c *Cache) storeLocked(key string, v Verdict, err error) entry {
	ttl := c.opts.NegativeTTL
	switch {
	case err != nil:
		ttl = c.opts.ErrorTTL
	case v.Allowed:
		ttl = c.opts.PositiveTTL
	}
	e := entry{verdict: v, err: err, expires: c.now().Add(ttl)}
	if _, ok := c.entries[key]; !ok && len(c.entries) >= c.opts.MaxEntries {
		c.evictLocked()
	}
	c.entries[key] = e
	return e
}

// evictLocked frees room: all expired entries, else one arbitrary entry.
func (c *Cache) evictLocked() {
	now := c.now()
	for k, e := range c.entries {
		if !now.Before(e.expires) {
			delete(c.entries, k)
		}
	}
	if len(c.entries) < c.opts.MaxEntries {
		return
	}
	for k := range c.entries {
		delete(c.entries, k)
		return
	}
}

// Purge drops every entry; used after a policy reload to free memory (the
// policy version in the key already keeps old verdicts from being used).
func (c *Cache) Purge() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.entries)
}

// Len returns the number of entries, expired or not.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// Stats returns a copy of the counters.
func (c *Cache) Stats() CacheStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

func (c *Cache) count(f func(*CacheStats)) {
	c.mu.Lock()
	f(&c.stats)
	c.mu.Unlock()
}
