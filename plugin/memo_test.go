package plugin

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nri-image-verifier/nri-image-verifier/gate"
)

func TestMemo(t *testing.T) {
	now := time.Unix(1000, 0)
	a := memoKey{Input: gate.Input{Image: "a", Digest: testDigest}}
	b := memoKey{Input: gate.Input{Image: "b", Digest: testDigest}}

	t.Run("second claim reuses the first decision", func(t *testing.T) {
		m := newMemo(8, time.Minute)
		e, owner := m.claim("c1", a, now)
		if !owner {
			t.Fatal("first claim must own the decision")
		}
		e.complete(a.Input, gate.Decision{Allowed: true})
		e2, owner := m.claim("c1", a, now.Add(time.Second))
		if owner || e2 != e {
			t.Fatal("second claim must reuse the entry")
		}
		select {
		case <-e2.done:
		default:
			t.Fatal("completed entry not done")
		}
		if !e2.d.Allowed {
			t.Error("decision lost")
		}
	})

	t.Run("another image under the same ID is decided again", func(t *testing.T) {
		m := newMemo(8, time.Minute)
		m.claim("c1", a, now)
		if _, owner := m.claim("c1", b, now); !owner {
			t.Fatal("claim for another image must decide")
		}
	})

	t.Run("entries expire", func(t *testing.T) {
		m := newMemo(8, time.Minute)
		m.claim("c1", a, now)
		if _, owner := m.claim("c1", a, now.Add(time.Minute)); !owner {
			t.Fatal("expired entry reused")
		}
		if n := m.size(); n != 1 {
			t.Errorf("len = %d, want 1", n)
		}
	})

	t.Run("capacity bounds the map, oldest first", func(t *testing.T) {
		m := newMemo(4, time.Minute)
		for i := range 10 {
			m.claim(fmt.Sprint("c", i), a, now)
		}
		if n := m.size(); n > 4 {
			t.Fatalf("len = %d, want <= 4", n)
		}
		if _, owner := m.claim("c9", a, now); owner {
			t.Error("newest entry evicted")
		}
		if _, owner := m.claim("c0", a, now); !owner {
			t.Error("oldest entry kept")
		}
		if len(m.queue) > 4 {
			t.Errorf("queue grew to %d", len(m.queue))
		}
	})

	t.Run("containers without ID are not remembered", func(t *testing.T) {
		m := newMemo(4, time.Minute)
		m.claim("", a, now)
		if _, owner := m.claim("", a, now); !owner {
			t.Error("empty ID reused")
		}
		if n := m.size(); n != 0 {
			t.Errorf("len = %d, want 0", n)
		}
	})
}

func TestBudget(t *testing.T) {
	start := time.Now()
	const timeout, margin = 1500 * time.Millisecond, 200 * time.Millisecond

	ctx, cancel := budget(t.Context(), start, timeout, margin)
	defer cancel()
	if d, _ := ctx.Deadline(); !d.Equal(start.Add(timeout)) {
		t.Errorf("no runtime deadline: got %v, want start+Timeout", d.Sub(start))
	}

	rctx, rcancel := context.WithDeadline(t.Context(), start.Add(time.Second))
	defer rcancel()
	ctx, cancel = budget(rctx, start, timeout, margin)
	defer cancel()
	if d, _ := ctx.Deadline(); !d.Equal(start.Add(time.Second - margin)) {
		t.Errorf("runtime deadline 1s: got %v, want 800ms", d.Sub(start))
	}

	rctx, rcancel = context.WithDeadline(t.Context(), start.Add(5*time.Second))
	defer rcancel()
	ctx, cancel = budget(rctx, start, timeout, margin)
	defer cancel()
	if d, _ := ctx.Deadline(); !d.Equal(start.Add(timeout)) {
		t.Errorf("runtime deadline 5s: got %v, want Timeout", d.Sub(start))
	}
}
