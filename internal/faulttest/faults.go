package faulttest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// The faults a Rule can serve, and the Trap that redirects point at. The
// proxy's mechanics (rules, counters, up and down) are in proxy.go.

// Status answers with code and a registry-style error body; retryAfter, if
// not empty, is sent as Retry-After.
func Status(code int, retryAfter string) Fault {
	return func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		fmt.Fprintf(w, `{"errors":[{"code":"FAULT","message":"injected %d"}]}`, code)
	}
}

// Unauthorized answers 401 with a bearer challenge pointing at the proxy's
// token endpoint, which issues tokens this answer never accepts: a loop a
// client must give up on.
func Unauthorized() Fault {
	return func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="http://%s%s",service="faults"`, r.Host, tokenPath))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"injected 401"}]}`)
	}
}

// ResetMidBody sends the real answer's headers and half its body, then
// resets the connection (TCP RST).
func ResetMidBody() Fault {
	return func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		rec := record(next, r)
		hj, ok := w.(http.Hijacker)
		if !ok {
			http.Error(w, "no hijack", http.StatusInternalServerError)
			return
		}
		conn, buf, err := hj.Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		body := rec.body.Bytes()
		fmt.Fprintf(buf, "HTTP/1.1 %d %s\r\n", rec.code, http.StatusText(rec.code))
		for k, vs := range rec.header {
			if strings.EqualFold(k, "Content-Length") {
				continue
			}
			for _, v := range vs {
				fmt.Fprintf(buf, "%s: %s\r\n", k, v)
			}
		}
		fmt.Fprintf(buf, "Content-Length: %d\r\n\r\n", max(len(body), 2))
		_, _ = buf.Write(body[:len(body)/2])
		_ = buf.Flush()
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // close sends RST
		}
	}
}

// SlowHeaders waits d (or until the client gives up) before answering.
func SlowHeaders(d time.Duration) Fault {
	return func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			next.ServeHTTP(w, r)
		case <-r.Context().Done():
		}
	}
}

// SlowBody sends the real answer's headers at once, then its body one byte
// every interval.
func SlowBody(interval time.Duration) Fault {
	return func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		rec := record(next, r)
		copyHeader(w.Header(), rec.header)
		w.WriteHeader(rec.code)
		fl, _ := w.(http.Flusher)
		t := time.NewTicker(interval)
		defer t.Stop()
		for _, b := range rec.body.Bytes() {
			if _, err := w.Write([]byte{b}); err != nil {
				return
			}
			if fl != nil {
				fl.Flush()
			}
			select {
			case <-t.C:
			case <-r.Context().Done():
				return
			}
		}
	}
}

// Huge answers 200 with n bytes of JSON-ish filler (as fast as the client
// reads), announcing the length when withLength is set, else chunked.
func Huge(n int64, withLength bool, contentType string) Fault {
	return func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
		w.Header().Set("Content-Type", contentType)
		if withLength {
			w.Header().Set("Content-Length", fmt.Sprint(n))
		}
		w.WriteHeader(http.StatusOK)
		chunk := []byte(strings.Repeat(" ", 64<<10))
		for sent := int64(0); sent < n; sent += int64(len(chunk)) {
			if _, err := w.Write(chunk[:min(int64(len(chunk)), n-sent)]); err != nil {
				return
			}
		}
	}
}

// Body answers 200 with body as contentType, whatever was asked for.
func Body(contentType string, body []byte) Fault {
	return func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
		w.Header().Set("Content-Type", contentType)
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			_, _ = w.Write(body)
		}
	}
}

// Rewrite passes the real answer through edit (body and headers) before
// sending it, e.g. to change the Content-Type or the content.
func Rewrite(edit func(h http.Header, body []byte) []byte) Fault {
	return func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		rec := record(next, r)
		body := rec.body.Bytes()
		if rec.code == http.StatusOK {
			body = edit(rec.header, body)
		}
		copyHeader(w.Header(), rec.header)
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.WriteHeader(rec.code)
		if r.Method != http.MethodHead {
			_, _ = w.Write(body)
		}
	}
}

// Redirect answers 307 to base (scheme://host[:port]) with the request's
// own path and query: a registry sending the client to a CDN or mirror.
func Redirect(base string) Fault {
	return func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
		http.Redirect(w, r, strings.TrimSuffix(base, "/")+r.URL.RequestURI(), http.StatusTemporaryRedirect)
	}
}

// recorder buffers a handler's answer so that a fault can alter it.
type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (rc *recorder) Header() http.Header { return rc.header }
func (rc *recorder) Write(b []byte) (int, error) {
	if rc.code == 0 {
		rc.code = http.StatusOK
	}
	return rc.body.Write(b)
}
func (rc *recorder) WriteHeader(code int) {
	if rc.code == 0 {
		rc.code = code
	}
}

func record(next http.Handler, r *http.Request) *recorder {
	rc := &recorder{header: http.Header{}}
	// A GET for the content even when the client sent HEAD, so that faults
	// on bodies have one.
	r2 := r.Clone(r.Context())
	if r2.Method == http.MethodHead {
		r2.Method = http.MethodGet
	}
	next.ServeHTTP(rc, r2)
	if rc.code == 0 {
		rc.code = http.StatusOK
	}
	return rc
}

func copyHeader(dst, src http.Header) {
	for k, vs := range src {
		dst[k] = append([]string(nil), vs...)
	}
}

// LoopbackOnlyDialer refuses to dial anything but loopback IP literals and
// "localhost", without resolving names: the guard tests put under the
// verifier's transport so that a redirect to another host is never
// actually followed off the machine. The error names the refused address.
func LoopbackOnlyDialer(d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		if ip := net.ParseIP(host); (ip == nil || !ip.IsLoopback()) && host != "localhost" {
			return nil, fmt.Errorf("faults: test guard refused to dial non-loopback address %s", addr)
		}
		return d.DialContext(ctx, network, addr)
	}
}

// Trap is a loopback HTTP proxy server for the environment's HTTP_PROXY:
// Go sends every request for a non-loopback host through it, so a process
// started with HTTP_PROXY and HTTPS_PROXY pointing at a Trap cannot reach
// off the machine. It refuses every request and records its host.
type Trap struct {
	srv   *http.Server
	ln    net.Listener
	mu    sync.Mutex
	hosts []string
}

// StartTrap listens on a fresh loopback port.
func StartTrap() (*Trap, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	t := &Trap{ln: ln}
	t.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if r.Method == http.MethodConnect {
			host = r.RequestURI
		}
		t.mu.Lock()
		t.hosts = append(t.hosts, host)
		t.mu.Unlock()
		http.Error(w, "faults: trap proxy refuses "+host, http.StatusForbidden)
	})}
	go func() { _ = t.srv.Serve(ln) }()
	return t, nil
}

// URL is the proxy URL for HTTP_PROXY.
func (t *Trap) URL() string { return "http://" + t.ln.Addr().String() }

// Hosts lists the hosts of the requests the trap refused.
func (t *Trap) Hosts() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.hosts...)
}

// Close stops the trap.
func (t *Trap) Close() { _ = t.srv.Close() }
