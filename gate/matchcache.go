package gate

import (
	"sync"

	"github.com/nri-image-verifier/nri-image-verifier/imageref"
	"github.com/nri-image-verifier/nri-image-verifier/policy"
)

// maxMatches bounds the per-policy match cache; a node runs far fewer
// distinct (image, namespace) pairs than this.
const maxMatches = 4096

// matchCache remembers policy.Match answers for one policy version. A rule
// match costs microseconds (reference parsing, explanations) and the hook
// runs on every container creation, so the warm path should not pay it.
type matchCache struct {
	mu sync.RWMutex
	m  map[string]matchResult
}

type matchResult struct {
	repo    string
	repoErr error
	m       *policy.Match
	err     error
}

// lookup returns the image's repository and the matching rule.
func (c *matchCache) lookup(m *policy.Matcher, image, namespace string) matchResult {
	key := image + "\x00" + namespace
	c.mu.RLock()
	r, ok := c.m[key]
	c.mu.RUnlock()
	if ok {
		return r
	}
	r.repo, r.repoErr = imageref.Repository(image)
	if r.repoErr == nil {
		r.m, r.err = m.Match(image, namespace)
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxMatches {
		c.m = make(map[string]matchResult)
	}
	c.m[key] = r
	c.mu.Unlock()
	return r
}
