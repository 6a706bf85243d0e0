package cosign

import (
	"context"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
)

// where is a set of places signatures of a verification may be: a format
// (the legacy .sig tag, or bundle referrers) on a candidate digest (the
// top-level digest, or the platform manifest an index leads to).
type where uint8

const (
	topLegacy where = 1 << iota
	topBundle
	childLegacy
	childBundle

	everywhere = topLegacy | topBundle | childLegacy | childBundle
)

var places = [...]where{topLegacy, topBundle, childLegacy, childBundle}

func (w where) child() bool  { return w&(childLegacy|childBundle) != 0 }
func (w where) bundle() bool { return w&(topBundle|childBundle) != 0 }

// lookups runs the signature lookups of one verification alongside its
// chain check, in two stages, and stops as soon as the policy is met.
//
// The first stage is where the signatures that met a policy for the same
// repository were found last time (the hint); with no hint, everywhere.
// Publishers sign every image of a repository the same way, so the first
// stage is usually all it takes: a legacy-signed image then costs the .sig
// manifest and its payload, not a referrers list besides. The second stage,
// every other place, starts as soon as the first stage has finished without
// meeting the policy: a hint only ever orders lookups, it never skips one
// that could still change the verdict.
type lookups struct {
	ctx   context.Context
	v     *Verifier
	repo  name.Repository
	roots []*trustRoot
	t     *tally
	first where

	launched where
	pending  int
	done     chan struct{} // one value per finished lookup
	wg       sync.WaitGroup
}

func newLookups(ctx context.Context, v *Verifier, repo name.Repository, roots []*trustRoot, t *tally, hint where) *lookups {
	if hint == 0 {
		hint = everywhere
	}
	return &lookups{ctx: ctx, v: v, repo: repo, roots: roots, t: t, first: hint, done: make(chan struct{}, len(places))}
}

func (l *lookups) launch(w where, cand string) {
	l.launched |= w
	l.pending++
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		var r result
		if w.bundle() {
			r = l.v.bundles(l.ctx, l.repo, cand, l.roots)
		} else {
			r = l.v.legacy(l.ctx, l.repo, cand, l.roots)
		}
		r.from = w
		l.t.add(r)
		l.done <- struct{}{}
	}()
}

// launchDue starts the lookups whose stage has come and whose digest is
// known; it reports whether any place is left that could still be looked up.
func (l *lookups) launchDue(top, child string, second bool) (left bool) {
	for _, w := range places {
		if l.launched&w != 0 {
			continue
		}
		cand := top
		if w.child() {
			if child == "" {
				left = true // until the chain check says there is no child
				continue
			}
			cand = child
		}
		if second || l.first&w != 0 {
			l.launch(w, cand)
		} else {
			left = true
		}
	}
	return left
}

type chainResult struct {
	cands []string
	err   error
}

// wait runs chain (the chain check: it returns the candidate digests,
// top first) and the lookups, and returns once the chain check has
// succeeded and either met says the policy is met or no lookup is left;
// or at once when the chain check fails. The second stage starts only if
// the first did not meet the policy: a first stage that met it while the
// chain check is still running needs nothing more than that check. Lookups still running then are
// the caller's to cancel and wait for (wg).
func (l *lookups) wait(top string, chain func(context.Context) ([]string, error), met func() bool) ([]string, error) {
	chained := make(chan chainResult, 1)
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		c, err := chain(l.ctx)
		chained <- chainResult{c, err}
	}()
	var (
		cands     []string
		chainDone bool
		child     string
		second    bool
	)
	for {
		if chainDone && met() {
			return cands, nil
		}
		left := l.launchDue(top, child, second)
		if l.pending == 0 {
			if chainDone && !left {
				return cands, nil
			}
			if !second && l.first&^l.launched == 0 && !met() {
				// The first stage is over and did not meet the
				// policy: look everywhere else.
				second = true
				continue
			}
		}
		select {
		case r := <-chained:
			if r.err != nil {
				return nil, r.err
			}
			chainDone, cands = true, r.cands
			for _, c := range cands {
				if c != top {
					child = c
				}
			}
			if child == "" {
				// No platform manifest: nothing to look up there.
				l.launched |= childLegacy | childBundle
			}
		case <-l.done:
			l.pending--
		}
	}
}

// maxHints bounds the hints kept; a node runs images from far fewer
// repositories.
const maxHints = 4096

// hints remembers per repository where the signatures that last met a
// policy were. The zero value is empty and ready.
type hints struct {
	mu sync.Mutex
	m  map[string]where
}

func (h *hints) get(repo string) where {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.m[repo]
}

func (h *hints) put(repo string, w where) {
	if w == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.m[repo]; !ok && len(h.m) >= maxHints || h.m == nil {
		h.m = make(map[string]where)
	}
	h.m[repo] = w
}
