package registry

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
)

// ErrBodyBudget is matched (errors.Is) by the error of a body read
// refused because the Client's budget for response bodies in flight is
// spent.
var ErrBodyBudget = errors.New("registry body budget exhausted")

type budgetError struct {
	req   string // method and redacted URL
	limit int64
}

func (e *budgetError) Error() string {
	return fmt.Sprintf("%s: node-wide registry body budget of %s exhausted by the responses in flight; retry", e.req, sizeText(e.limit))
}

func (e *budgetError) Is(target error) bool { return target == ErrBodyBudget }

// bodyBudget bounds the bytes of response bodies that all requests of a
// Client (on a node: every verification) have read and not yet finished
// with. The size caps bound one response; this bounds them together, so
// that many verifications against a registry that sends a body just under
// its cap and then stalls cannot hold cap × requests of memory. Bytes are
// reserved before each read and released when the body is closed, read to
// its end or fails, or its request's deadline passes, whichever comes
// first: a body a caller forgets to close holds its bytes no longer than
// the request timeout.
type bodyBudget struct {
	limit   int64
	used    atomic.Int64
	refused atomic.Uint64 // reads refused for want of budget
}

// budgetChunk is the most one read reserves: a large read buffer
// (io.ReadAll's grows) must not look like a large body.
const budgetChunk = 32 << 10

func (b *bodyBudget) tryAcquire(n int64) bool {
	for {
		cur := b.used.Load()
		if cur+n > b.limit {
			return false
		}
		if b.used.CompareAndSwap(cur, cur+n) {
			return true
		}
	}
}

func (b *bodyBudget) release(n int64) { b.used.Add(-n) }

func (b *bodyBudget) exhausted(req *http.Request) error {
	b.refused.Add(1)
	return &budgetError{req: req.Method + " " + redactURL(req), limit: b.limit}
}

func sizeText(n int64) string {
	if n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}

// held is one body's share of the budget. Its methods are safe to call
// from the reader and from the deadline's goroutine at once.
type held struct {
	budget *bodyBudget // nil: no budget
	mu     sync.Mutex
	n      int64
	done   bool // released for good; later reads reserve nothing
}

// reserve takes up to want bytes (at most budgetChunk) for one read.
func (h *held) reserve(want int) (int, bool) {
	if h.budget == nil || want == 0 {
		return want, true
	}
	k := min(want, budgetChunk)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.done {
		// Released: the body is finished with; let the read report
		// how (closed, deadline) without counting it again.
		return k, true
	}
	if !h.budget.tryAcquire(int64(k)) {
		return 0, false
	}
	h.n += int64(k)
	return k, true
}

// settle gives back what a read reserved but did not fill.
func (h *held) settle(reserved, got int) {
	if h.budget == nil || reserved == got {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.done {
		h.n -= int64(reserved - got)
		h.budget.release(int64(reserved - got))
	}
}

// releaseAll gives back everything, once.
func (h *held) releaseAll() {
	if h.budget == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.done {
		h.budget.release(h.n)
		h.n, h.done = 0, true
	}
}
