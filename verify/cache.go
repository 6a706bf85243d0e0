package verify

import (
	"context"
	"errors"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// ErrPending is returned by Cache.Get when the caller's context ended before
// the verification finished. The verification goes on in the background and
// its result is cached, so a retry (kubelet retries a failed create on its
// next pod sync) finds it.
var ErrPending = errors.New("verification still running")

// CacheOptions bound how long answers are kept.
type CacheOptions struct {
	// PositiveTTL keeps an allow verdict.
	PositiveTTL time.Duration
	// NegativeTTL keeps a deny verdict (a signature may be added later).
	NegativeTTL time.Duration
	// ErrorTTL keeps a transient error (registry down) only briefly, so that
	// a retry soon tries again, while a burst of creates does not hammer a
	// failing registry.
	ErrorTTL time.Duration
	// VerifyTimeout bounds one background verification.
	VerifyTimeout time.Duration
	// MaxEntries bounds memory; when full, expired entries go first, then
	// arbitrary ones.
	MaxEntries int
}

// DefaultCacheOptions are sane defaults for a node.
func DefaultCacheOptions() CacheOptions {
	return CacheOptions{
		PositiveTTL:   time.Hour,
		NegativeTTL:   time.Minute,
		ErrorTTL:      5 * time.Second,
		VerifyTimeout: 30 * time.Second,
		MaxEntries:    50000,
	}
}

type entry struct {
	verdict Verdict
	err     error
	expires time.Time
}

// Cache holds verdicts keyed by (digest, rule, policy version) and runs one
// verification per key at a time (singleflight), detached from the caller so
// that a caller giving up does not waste the work.
type Cache struct {
	opts    CacheOptions
	now     func() time.Time
	flights singleflight.Group

	mu      sync.Mutex
	entries map[string]entry
	stats   CacheStats
}

// CacheStats counts lookups, for metrics and benchmarks.
type CacheStats struct {
	Hits, Misses, Verifications, Pending uint64
}

// NewCache returns an empty cache. Zero option fields take the defaults.
func NewCache(opts CacheOptions) *Cache {
	def := DefaultCacheOptions()
	if opts.PositiveTTL <= 0 {
		opts.PositiveTTL = def.PositiveTTL
	}
	if opts.NegativeTTL <= 0 {
		opts.NegativeTTL = def.NegativeTTL
	}
	if opts.ErrorTTL <= 0 {
		opts.ErrorTTL = def.ErrorTTL
	}
	if opts.VerifyTimeout <= 0 {
		opts.VerifyTimeout = def.VerifyTimeout
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = def.MaxEntries
	}
	return &Cache{opts: opts, now: time.Now, entries: map[string]entry{}}
}

// Key builds a cache key. Every part that can change the answer is in it:
// the policy version makes a reload invalidate old verdicts.
func Key(digest, configDigest, rule, policyVersion string) string {
	return digest + "|" + configDigest + "|" + rule + "|" + policyVersion
}

// Get answers from the cache, or joins or starts the verification for key and
// waits for it until ctx is done (then ErrPending). hit says whether the
// answer came from the cache without waiting.
func (c *Cache) Get(ctx context.Context, key string, verify func(context.Context) (Verdict, error)) (v Verdict, err error, hit bool) {
	if e, ok := c.lookup(key); ok {
		return e.verdict, e.err, true
	}
	ch := c.flights.DoChan(key, func() (any, error) {
		// A previous flight may have stored the answer between our lookup
		// and this call.
		if e, ok := c.peek(key); ok {
			return e, nil
		}
		c.count(func(s *CacheStats) { s.Verifications++ })
		vctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opts.VerifyTimeout)
		defer cancel()
		verdict, verr := verify(vctx)
		e := c.store(key, verdict, verr)
		return e, nil
	})
	select {
	case r := <-ch:
		e := r.Val.(entry)
		return e.verdict, e.err, false
	case <-ctx.Done():
		c.count(func(s *CacheStats) { s.Pending++ })
		return Verdict{}, ErrPending, false
	}
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

func (c *Cache) lookup(key string) (entry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if ok && c.now().Before(e.expires) {
		c.stats.Hits++
		return e, true
	}
	c.stats.Misses++
	return entry{}, false
}

func (c *Cache) peek(key string) (entry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	return e, ok && c.now().Before(e.expires)
}

func (c *Cache) store(key string, v Verdict, err error) entry {
	ttl := c.opts.NegativeTTL
	switch {
	case err != nil:
		ttl = c.opts.ErrorTTL
	case v.Allowed:
		ttl = c.opts.PositiveTTL
	}
	e := entry{verdict: v, err: err, expires: c.now().Add(ttl)}
	c.mu.Lock()
	defer c.mu.Unlock()
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
