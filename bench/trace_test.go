package bench

import (
	"net/http"
	"net/http/httptrace"
	"slices"
	"sync"
	"time"
)

// tracer is the instrumented transport: it sits under the registry client
// (so under go-containerregistry's auth and retry layers) and records every
// HTTP request that goes to the network, when it was sent, when its
// response headers came, and whether it needed a new connection.
type tracer struct {
	next http.RoundTripper

	mu    sync.Mutex
	spans []span
}

type span struct {
	method, path string
	start, end   time.Time
	newConn      bool
}

func newTracer() *tracer {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 16 // as the daemon's (verify/registry)
	return &tracer{next: t}
}

func (t *tracer) RoundTrip(req *http.Request) (*http.Response, error) {
	s := span{method: req.Method, path: req.URL.Path}
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { s.newConn = !i.Reused }}
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
	s.start = time.Now()
	resp, err := t.next.RoundTrip(req)
	s.end = time.Now()
	t.mu.Lock()
	t.spans = append(t.spans, s)
	t.mu.Unlock()
	return resp, err
}

// take returns the spans recorded since the last take and forgets them.
func (t *tracer) take() []span {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.spans
	t.spans = nil
	return s
}

// depth is the number of sequential round trips in spans: the longest chain
// of requests each sent after the previous one was answered, where a
// request on a new connection counts twice (the TCP handshake is a round
// trip of its own). Requests that overlap in time ran in parallel and add
// nothing.
func depth(spans []span) int {
	s := slices.Clone(spans)
	slices.SortFunc(s, func(a, b span) int { return a.start.Compare(b.start) })
	best := 0
	d := make([]int, len(s))
	for i := range s {
		w := 1
		if s[i].newConn {
			w = 2
		}
		d[i] = w
		for j := range i {
			if !s[j].end.After(s[i].start) && d[j]+w > d[i] {
				d[i] = d[j] + w
			}
		}
		best = max(best, d[i])
	}
	return best
}
