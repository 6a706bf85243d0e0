// Package faulttest puts a fault-injecting HTTP proxy on loopback between
// the verifier and a registry, so that tests can show how the gate decides
// when the registry is hostile or broken, and measures what a leak shows in
// (Usage). integration/faults drives the real gate, cosign validator,
// registry client and NRI plugin through it, and the real binary;
// integration/soak flaps the registry with it.
//
// The proxy forwards to a real registry (internal/imagetest) and, for the
// requests a Rule matches, serves a Fault instead: refused connections,
// resets mid-body, slow headers or bodies, huge or invalid content, wrong
// media types or digests, redirects, 401 loops, 429 and 5xx. It never dials
// anything but its loopback upstream and the targets a test gives it.
package faulttest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Kind is what a registry API request asks for.
type Kind string

// Request kinds, from the path of /v2/<name>/<kind>/<reference>.
const (
	KindPing      Kind = "ping"      // GET /v2/
	KindToken     Kind = "token"     // the proxy's own token endpoint
	KindManifest  Kind = "manifest"  // by digest
	KindTag       Kind = "tag"       // manifest by tag (the .sig tag, the referrers tag)
	KindSigTag    Kind = "sig-tag"   // manifest by the cosign tag sha256-<hex>.sig
	KindBlob      Kind = "blob"      // blob by digest
	KindReferrers Kind = "referrers" // OCI 1.1 referrers API
	KindOther     Kind = "other"     // anything else
)

// KindOf classifies a request path. A .sig tag is both KindTag and
// KindSigTag; KindOf returns the narrower one.
func KindOf(path string) Kind {
	if path == "/v2/" || path == "/v2" {
		return KindPing
	}
	if path == tokenPath {
		return KindToken
	}
	parts := strings.Split(strings.Trim(path, "/"), "/")
	if len(parts) < 4 || parts[0] != "v2" {
		return KindOther
	}
	ref := parts[len(parts)-1]
	switch parts[len(parts)-2] {
	case "manifests":
		switch {
		case strings.Contains(ref, ":"):
			return KindManifest
		case strings.HasSuffix(ref, ".sig"):
			return KindSigTag
		}
		return KindTag
	case "blobs":
		return KindBlob
	case "referrers":
		return KindReferrers
	}
	return KindOther
}

const tokenPath = "/faults/token"

// Fault answers a request instead of the registry. next is the registry
// (through the proxy), for faults that alter a real answer.
type Fault func(w http.ResponseWriter, r *http.Request, next http.Handler)

// Rule applies Fault to the requests of the given kinds (all requests when
// Kinds is empty). Times > 0 applies it to that many requests only, after
// which they pass through (a fault the client can recover from).
type Rule struct {
	Kinds []Kind
	Fault Fault
	Times int
}

func (r *Rule) matches(k Kind) bool {
	if len(r.Kinds) == 0 {
		return true
	}
	for _, want := range r.Kinds {
		if want == k || (want == KindTag && k == KindSigTag) {
			return true
		}
	}
	return false
}

// Proxy is the fault-injecting proxy. Create it with Start.
type Proxy struct {
	upstream *url.URL
	rp       *httputil.ReverseProxy
	srv      *http.Server
	addr     string

	mu      sync.Mutex
	ln      net.Listener
	rules   []*rule
	serving sync.WaitGroup

	requests atomic.Int64
	faulted  atomic.Int64
	inflight atomic.Int64
	authSeen sync.Map // Kind -> true when a request of that kind carried Authorization
}

type rule struct {
	Rule
	left atomic.Int64 // remaining applications when Times > 0
}

// Start serves a proxy to upstream ("127.0.0.1:port") on a fresh loopback
// port. Close it when done.
func Start(upstream string) (*Proxy, error) {
	u := &url.URL{Scheme: "http", Host: upstream}
	p := &Proxy{upstream: u}
	p.rp = httputil.NewSingleHostReverseProxy(u)
	// Its own transport, so that closing it closes the upstream connections.
	p.rp.Transport = &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     30 * time.Second,
	}
	p.rp.ErrorLog = nil
	p.rp.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, err error) {
		// The client went away (a timeout, a cancelled verification).
		if !errors.Is(err, context.Canceled) {
			http.Error(w, "faults proxy: upstream: "+err.Error(), http.StatusBadGateway)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p.ln, p.addr = ln, ln.Addr().String()
	p.srv = &http.Server{Handler: http.HandlerFunc(p.serveHTTP), ReadHeaderTimeout: 5 * time.Second,
		ErrorLog: nil}
	p.serve(ln)
	return p, nil
}

func (p *Proxy) serve(ln net.Listener) {
	p.serving.Add(1)
	go func() {
		defer p.serving.Done()
		_ = p.srv.Serve(ln) // returns when the listener is closed
	}()
}

// Addr is the proxy's host:port, the registry host tests put in images.
func (p *Proxy) Addr() string { return p.addr }

// Set replaces the rules.
func (p *Proxy) Set(rules ...Rule) {
	rs := make([]*rule, len(rules))
	for i, r := range rules {
		rs[i] = &rule{Rule: r}
		rs[i].left.Store(int64(r.Times))
	}
	p.mu.Lock()
	p.rules = rs
	p.mu.Unlock()
}

// Clear removes all rules: everything passes through.
func (p *Proxy) Clear() { p.Set() }

// Requests is the number of requests the proxy received.
func (p *Proxy) Requests() int64 { return p.requests.Load() }

// Faulted is the number of requests answered by a Fault.
func (p *Proxy) Faulted() int64 { return p.faulted.Load() }

// InFlight is the number of requests being answered now.
func (p *Proxy) InFlight() int64 { return p.inflight.Load() }

// SawAuthorization reports whether a request of kind k carried credentials.
func (p *Proxy) SawAuthorization(k Kind) bool {
	_, ok := p.authSeen.Load(k)
	return ok
}

// ResetCounters zeroes Requests and Faulted.
func (p *Proxy) ResetCounters() {
	p.requests.Store(0)
	p.faulted.Store(0)
}

// Down closes the listener: new connections are refused until Up. Open
// connections are closed too, as when a registry process dies.
func (p *Proxy) Down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		return
	}
	_ = p.ln.Close()
	p.ln = nil
	p.serving.Wait()
	// Serve has returned; a fresh server for the next Up, and the old one's
	// connections closed.
	old := p.srv
	p.srv = &http.Server{Handler: old.Handler, ReadHeaderTimeout: old.ReadHeaderTimeout}
	_ = old.Close()
}

// Up listens again on the same address after Down.
func (p *Proxy) Up() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		return nil
	}
	var ln net.Listener
	var err error
	// The port was ours a moment ago; retry briefly in case the kernel has
	// not released it yet.
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("faults proxy: listen again on %s: %w", p.addr, err)
	}
	p.ln = ln
	p.serve(ln)
	return nil
}

// Close stops the proxy and closes every connection it holds.
func (p *Proxy) Close() {
	p.Down()
	p.mu.Lock()
	defer p.mu.Unlock()
	_ = p.srv.Close()
	p.rp.Transport.(*http.Transport).CloseIdleConnections()
}

// CloseIdleConnections closes the proxy's idle connections, to upstream
// and from clients (which then close theirs: what a process under test
// holds open comes back to what it needs).
func (p *Proxy) CloseIdleConnections() {
	p.rp.Transport.(*http.Transport).CloseIdleConnections()
	p.mu.Lock()
	srv := p.srv
	p.mu.Unlock()
	srv.SetKeepAlivesEnabled(false) // closes idle connections
	srv.SetKeepAlivesEnabled(true)
}

func (p *Proxy) serveHTTP(w http.ResponseWriter, r *http.Request) {
	p.requests.Add(1)
	p.inflight.Add(1)
	defer p.inflight.Add(-1)
	kind := KindOf(r.URL.Path)
	if r.Header.Get("Authorization") != "" {
		p.authSeen.Store(kind, true)
	}
	if kind == KindToken {
		// A token endpoint that hands out tokens the registry never
		// accepts (see Unauthorized).
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"token":"faults-token","expires_in":300}`)
		return
	}
	if f := p.fault(kind); f != nil {
		p.faulted.Add(1)
		f(w, r, p.rp)
		return
	}
	p.rp.ServeHTTP(w, r)
}

func (p *Proxy) fault(k Kind) Fault {
	p.mu.Lock()
	rules := p.rules
	p.mu.Unlock()
	for _, r := range rules {
		if !r.matches(k) {
			continue
		}
		if r.Times > 0 && r.left.Add(-1) < 0 {
			continue
		}
		return r.Fault
	}
	return nil
}
