package notaryv1

import (
	"container/list"
	"context"
	"fmt"
	"sync"

	store "github.com/theupdateframework/notary/storage"
)

// Trust data is kept in memory between verifications, per repository:
// notary's client then checks each new version against the one already
// seen (no rollback), and downloads only what changed (the timestamp is
// always fetched). Nothing is written to disk, so no other tenant of the
// node can change it. The whole is bounded: past MaxCacheBytes or
// MaxRepositories the least recently used repository is dropped, and with
// it the memory of its versions.

// repoState is one repository's cached trust data. Verifications of one
// repository take turns (sem), since notary's client reads and writes the
// cache as it goes.
type repoState struct {
	gun   string
	sem   chan struct{}
	cache *metaCache
	elem  *list.Element
	// charged is what this repository counts against MaxCacheBytes;
	// guarded by repoCaches.mu.
	charged int64
}

func (st *repoState) lock(ctx context.Context) error {
	select {
	case st.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for another verification of %s: %w", st.gun, context.Cause(ctx))
	}
}

func (st *repoState) unlock() { <-st.sem }

// repoCaches is the LRU of repoStates.
type repoCaches struct {
	maxBytes int64
	maxRepos int

	mu    sync.Mutex
	total int64
	lru   *list.List // front: most recently used
	byGUN map[string]*repoState
}

func newRepoCaches(maxBytes int64, maxRepos int) *repoCaches {
	return &repoCaches{maxBytes: maxBytes, maxRepos: maxRepos, lru: list.New(), byGUN: map[string]*repoState{}}
}

// get returns gun's state, created empty if need be.
func (c *repoCaches) get(gun string) *repoState {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.byGUN[gun]; ok {
		c.lru.MoveToFront(st.elem)
		return st
	}
	st := &repoState{gun: gun, sem: make(chan struct{}, 1)}
	st.cache = &metaCache{files: map[string][]byte{}, charge: func(delta int64) { c.charge(st, delta) }}
	st.elem = c.lru.PushFront(st)
	c.byGUN[gun] = st
	c.evict(st)
	return st
}

// charge accounts for a change in st's size, then evicts other
// repositories while over budget. A state already evicted is not counted:
// the verification still using it finishes, and then it is garbage.
func (c *repoCaches) charge(st *repoState, delta int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byGUN[st.gun] != st {
		return
	}
	st.charged += delta
	c.total += delta
	c.evict(st)
}

// evict drops least recently used repositories other than keep.
func (c *repoCaches) evict(keep *repoState) {
	for (c.total > c.maxBytes || c.lru.Len() > c.maxRepos) && c.lru.Len() > 1 {
		back := c.lru.Back()
		st := back.Value.(*repoState)
		if st == keep {
			back = back.Prev()
			st = back.Value.(*repoState)
		}
		c.lru.Remove(back)
		delete(c.byGUN, st.gun)
		c.total -= st.charged
		st.charged = 0
	}
}

// metaCache is notary's metadata cache for one repository, in memory. It
// is only used under its repoState's lock.
type metaCache struct {
	files  map[string][]byte
	charge func(delta int64)
}

var _ store.MetadataStore = (*metaCache)(nil)

// GetSized returns the cached file, cut to size as notary's MemoryStore
// does (notary then sees the checksum fail and downloads it).
func (m *metaCache) GetSized(name string, size int64) ([]byte, error) {
	b, ok := m.files[name]
	if !ok {
		return nil, store.ErrMetaNotFound{Resource: name}
	}
	if size >= 0 && int64(len(b)) > size {
		b = b[:size]
	}
	return b, nil
}

func (m *metaCache) Set(name string, b []byte) error {
	delta := int64(len(b)) - int64(len(m.files[name]))
	m.files[name] = b
	m.charge(delta)
	return nil
}

func (m *metaCache) SetMulti(files map[string][]byte) error {
	for n, b := range files {
		if err := m.Set(n, b); err != nil {
			return err
		}
	}
	return nil
}

func (m *metaCache) Remove(name string) error {
	m.charge(-int64(len(m.files[name])))
	delete(m.files, name)
	return nil
}

func (m *metaCache) RemoveAll() error {
	for n := range m.files {
		if err := m.Remove(n); err != nil {
			return err
		}
	}
	return nil
}

func (m *metaCache) Location() string { return "memory" }
