package verify

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeClock) now() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.t }
func (f *fakeClock) add(d time.Duration) {
	f.mu.Lock()
	f.t = f.t.Add(d)
	f.mu.Unlock()
}

func newTestCache(opts CacheOptions) (*Cache, *fakeClock) {
	c := NewCache(opts)
	clk := &fakeClock{t: time.Unix(1000, 0)}
	c.now = clk.now
	return c, clk
}

func TestCacheSingleflight(t *testing.T) {
	c, _ := newTestCache(CacheOptions{})
	var calls atomic.Int32
	release := make(chan struct{})
	verify := func(context.Context) (Verdict, error) {
		calls.Add(1)
		<-release
		return Verdict{Allowed: true, Reason: "ok"}, nil
	}
	const n = 50
	var wg sync.WaitGroup
	results := make(chan Verdict, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err, _ := c.Get(context.Background(), "k", verify)
			if err != nil {
				t.Errorf("Get: %v", err)
			}
			results <- v
		}()
	}
	// Let every goroutine join the flight before releasing it.
	waitFor(t, func() bool { return calls.Load() == 1 })
	close(release)
	wg.Wait()
	close(results)
	for v := range results {
		if !v.Allowed {
			t.Fatalf("got deny, want allow")
		}
	}
	if got := calls.Load(); got != 1 {
		t.Fatalf("verifications = %d, want 1", got)
	}
	if _, _, hit := c.Get(context.Background(), "k", verify); !hit {
		t.Fatalf("second lookup missed the cache")
	}
}

func TestCacheTTLs(t *testing.T) {
	c, clk := newTestCache(CacheOptions{PositiveTTL: time.Hour, NegativeTTL: time.Minute, ErrorTTL: time.Second})
	var calls atomic.Int32
	mk := func(v Verdict, err error) func(context.Context) (Verdict, error) {
		return func(context.Context) (Verdict, error) { calls.Add(1); return v, err }
	}
	ctx := context.Background()
	cases := []struct {
		name string
		fn   func(context.Context) (Verdict, error)
		ttl  time.Duration
	}{
		{"allow", mk(Verdict{Allowed: true}, nil), time.Hour},
		{"deny", mk(Verdict{Allowed: false}, nil), time.Minute},
		{"error", mk(Verdict{}, errors.New("registry down")), time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			calls.Store(0)
			c.Get(ctx, tc.name, tc.fn)
			clk.add(tc.ttl - time.Millisecond)
			if _, _, hit := c.Get(ctx, tc.name, tc.fn); !hit {
				t.Fatalf("expired before its TTL")
			}
			clk.add(2 * time.Millisecond)
			if _, _, hit := c.Get(ctx, tc.name, tc.fn); hit {
				t.Fatalf("still cached after its TTL")
			}
			if got := calls.Load(); got != 2 {
				t.Fatalf("verifications = %d, want 2", got)
			}
		})
	}
}

func TestCachePendingThenCached(t *testing.T) {
	c, _ := newTestCache(CacheOptions{})
	release := make(chan struct{})
	done := make(chan struct{})
	verify := func(ctx context.Context) (Verdict, error) {
		defer close(done)
		select {
		case <-release:
		case <-ctx.Done():
			t.Errorf("background verification was cancelled with its caller")
		}
		return Verdict{Allowed: true}, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err, _ := c.Get(ctx, "k", verify)
	if !errors.Is(err, ErrPending) {
		t.Fatalf("err = %v, want ErrPending", err)
	}
	close(release)
	<-done
	waitFor(t, func() bool { return c.Len() == 1 })
	v, err, hit := c.Get(context.Background(), "k", verify)
	if err != nil || !v.Allowed || !hit {
		t.Fatalf("retry: verdict %+v err %v hit %v, want cached allow", v, err, hit)
	}
}

func TestCacheVerifyTimeout(t *testing.T) {
	c, _ := newTestCache(CacheOptions{VerifyTimeout: 10 * time.Millisecond})
	_, err, _ := c.Get(context.Background(), "k", func(ctx context.Context) (Verdict, error) {
		<-ctx.Done()
		return Verdict{}, fmt.Errorf("registry: %w", ctx.Err())
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
}

func TestCacheBounded(t *testing.T) {
	c, clk := newTestCache(CacheOptions{MaxEntries: 10, NegativeTTL: time.Minute})
	deny := func(context.Context) (Verdict, error) { return Verdict{}, nil }
	for i := range 25 {
		c.Get(context.Background(), fmt.Sprint(i), deny)
	}
	if n := c.Len(); n > 10 {
		t.Fatalf("Len = %d, want <= 10", n)
	}
	clk.add(2 * time.Minute)
	c.Get(context.Background(), "new", deny)
	if n := c.Len(); n != 1 {
		t.Fatalf("after expiry Len = %d, want 1 (expired entries evicted first)", n)
	}
	c.Purge()
	if n := c.Len(); n != 0 {
		t.Fatalf("after Purge Len = %d", n)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met in time")
		}
		time.Sleep(time.Millisecond)
	}
}

// Cached answers from the cache only: never verifies, counts hits only.
func TestCacheCached(t *testing.T) {
	c, clk := newTestCache(CacheOptions{PositiveTTL: time.Minute})
	if _, _, ok := c.Cached("k"); ok {
		t.Fatal("empty cache answered")
	}
	c.Get(context.Background(), "k", func(context.Context) (Verdict, error) { return Verdict{Allowed: true, Reason: "ok"}, nil })
	v, err, ok := c.Cached("k")
	if !ok || err != nil || !v.Allowed {
		t.Fatalf("Cached = %+v, %v, %v", v, err, ok)
	}
	if s := c.Stats(); s.Hits != 1 || s.Misses != 1 || s.Verifications != 1 {
		t.Fatalf("stats %+v, want 1 hit, 1 miss (Get's), 1 verification", s)
	}
	clk.add(2 * time.Minute)
	if _, _, ok := c.Cached("k"); ok {
		t.Fatal("expired verdict answered")
	}
}
