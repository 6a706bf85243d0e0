package plugin

import (
	"sync"
	"time"

	"github.com/nri-image-verifier/nri-image-verifier/gate"
)

// The runtime asks twice about each container it creates (CreateContainer,
// then ValidateContainerAdjustment) and a few hundred containers start per
// minute at most, so a minute of memory in 4096 entries is plenty; beyond
// that the oldest go first and a late validation simply decides again.
const (
	memoCap = 4096
	memoTTL = time.Minute
)

// memo remembers decisions by container ID so that one container is checked
// and reported once. Entries are kept in insertion order, which is also
// expiry order, so trimming is done from the front.
type memo struct {
	mu    sync.Mutex
	cap   int
	ttl   time.Duration
	byID  map[string]*entry
	queue []*entry
}

// memoKey is what a container's decision was made on, as the request
// said it: its image identity and its image volumes. A request that says
// anything else is about another container and is decided afresh.
type memoKey struct {
	gate.Input
	// volumes lists the image volume mounts ("dest=source", NUL
	// separated), or why they did not parse.
	volumes string
}

// entry is one container's decision. done is closed once in and d are set.
type entry struct {
	id  string
	key memoKey // identity as extracted, before any resolution
	at  time.Time

	done chan struct{}
	in   gate.Input // identity the decision was made on
	d    gate.Decision
}

func newMemo(capacity int, ttl time.Duration) *memo {
	return &memo{cap: capacity, ttl: ttl, byID: make(map[string]*entry)}
}

// claim returns the entry for container id with identity key. When owner is
// true the caller must decide and call complete; otherwise it waits on done.
// A container without ID is never remembered.
func (m *memo) claim(id string, key memoKey, now time.Time) (e *entry, owner bool) {
	e = &entry{id: id, key: key, at: now, done: make(chan struct{})}
	if id == "" {
		return e, true
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	m.trim(now)
	// An entry for the same ID but another image is not reused: the request
	// is not about the container that was decided.
	if old := m.byID[id]; old != nil && old.key == key {
		return old, false
	}
	m.byID[id] = e
	m.queue = append(m.queue, e)
	return e, true
}

// trim drops expired entries, and the oldest ones while at capacity. The
// caller holds mu.
func (m *memo) trim(now time.Time) {
	for len(m.queue) > 0 {
		old := m.queue[0]
		if len(m.queue) < m.cap && now.Sub(old.at) < m.ttl {
			return
		}
		m.queue[0] = nil
		m.queue = m.queue[1:]
		// The ID may have been claimed again for another image since.
		if m.byID[old.id] == old {
			delete(m.byID, old.id)
		}
	}
}

// size is the number of remembered containers, for tests.
func (m *memo) size() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.byID)
}

// complete publishes the decision to waiting and later callers.
func (e *entry) complete(in gate.Input, d gate.Decision) {
	e.in, e.d = in, d
	close(e.done)
}
