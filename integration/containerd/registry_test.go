package containerd

import (
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
)

// registryFaults sits in front of the world's registry and makes some
// repositories slow or unreachable, leaving the others alone, so that a
// fault test cannot disturb the rest. containerd has pulled its images
// before a fault is set: creating a container needs no registry, verifying
// its image does, so only the plugin meets the fault.
type registryFaults struct {
	mu    sync.Mutex
	rules map[string]*fault // by repository ("e2e/slow")
}

// fault is what requests for one repository meet.
type fault struct {
	// hold, if not nil, holds every request until it is closed (the
	// registry answers again) or the client gives up.
	hold chan struct{}
	// drop closes every connection without an answer: the registry is
	// unreachable.
	drop bool
	hits atomic.Int64 // requests that met the fault
}

// slow holds every request for repo until heal.
func (f *registryFaults) slow(repo string) *fault {
	return f.set(repo, &fault{hold: make(chan struct{})})
}

// down drops every connection that asks for repo until heal.
func (f *registryFaults) down(repo string) *fault {
	return f.set(repo, &fault{drop: true})
}

func (f *registryFaults) set(repo string, x *fault) *fault {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.rules == nil {
		f.rules = map[string]*fault{}
	}
	f.rules[repo] = x
	return x
}

// heal makes repo answer again, releasing the held requests.
func (f *registryFaults) heal(repo string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if x := f.rules[repo]; x != nil && x.hold != nil {
		close(x.hold)
	}
	delete(f.rules, repo)
}

func (f *registryFaults) healAll() {
	f.mu.Lock()
	var repos []string
	for r := range f.rules {
		repos = append(repos, r)
	}
	f.mu.Unlock()
	for _, r := range repos {
		f.heal(r)
	}
}

// lookup returns the fault for a registry API path, /v2/<repo>/<kind>/<ref>.
func (f *registryFaults) lookup(path string) *fault {
	f.mu.Lock()
	defer f.mu.Unlock()
	for repo, x := range f.rules {
		if strings.HasPrefix(path, "/v2/"+repo+"/") {
			return x
		}
	}
	return nil
}

func (f *registryFaults) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		x := f.lookup(r.URL.Path)
		if x == nil {
			next.ServeHTTP(w, r)
			return
		}
		x.hits.Add(1)
		if x.drop {
			if hj, ok := w.(http.Hijacker); ok {
				if conn, _, err := hj.Hijack(); err == nil {
					conn.Close()
					return
				}
			}
			http.Error(w, "registry down", http.StatusServiceUnavailable)
			return
		}
		select {
		case <-x.hold:
		case <-r.Context().Done():
			return
		}
		next.ServeHTTP(w, r)
	})
}
