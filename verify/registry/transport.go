package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// capTransport sits under go-containerregistry's auth and retry transports,
// so it sees every request (ping, token, manifest, blob, redirect hop). It
// gives each request its own deadline and fails any response whose body is
// larger than the cap for its kind: a hostile or broken registry must not
// make the daemon buffer gigabytes (remote's own manifest limit is 100 MiB,
// blobs have none).
type capTransport struct {
	next    http.RoundTripper
	timeout time.Duration
	caps    [classBlob + 1]int64 // by sizeClass; see caps.go
	budget  *bodyBudget          // nil: none (tests)
}

// maxRedirects bounds one chain of redirects, as http.Client's default
// policy does. go-containerregistry replaces that policy with its SSRF check
// (no redirect to a private or link-local IP literal of another host), which
// has no limit of its own: without this one, a registry answering every
// request with a redirect to itself keeps a verification busy until its
// deadline, at thousands of requests a second, and http.Client keeps every
// hop of the chain in memory.
const maxRedirects = 10

func (t *capTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := plainHTTPAllowed(req); err != nil {
		return nil, err
	}
	if n := redirects(req); n > maxRedirects {
		return nil, fmt.Errorf("%w: stopped after %d redirects (now to %s)", ErrTooManyRedirects, maxRedirects, redactURL(req))
	}
	ctx, cancel := context.WithTimeout(req.Context(), t.timeout)
	resp, err := t.next.RoundTrip(req.WithContext(ctx))
	if err != nil {
		timedOut := errors.Is(ctx.Err(), context.DeadlineExceeded) && req.Context().Err() == nil
		cancel()
		if timedOut {
			// http.Client adds the method and URL.
			return nil, fmt.Errorf("no response within the %s request timeout: %w", t.timeout, err)
		}
		return nil, err
	}
	if req.Method == http.MethodHead {
		// A HEAD response announces the size of the GET body without
		// sending it; nothing to cap.
		resp.Body = t.body(resp.Body, -1, "", ctx, cancel, req)
		return resp, nil
	}
	limit, kind := t.limitFor(req)
	if resp.ContentLength > limit {
		_ = resp.Body.Close() // the response is refused; a close error changes nothing
		cancel()
		return nil, fmt.Errorf("%w: Content-Length %d exceeds the %s size cap of %d bytes", ErrTooLarge, resp.ContentLength, kind, limit)
	}
	resp.Body = t.body(resp.Body, limit, kind, ctx, cancel, req)
	return resp, nil
}

// body wraps rc for the size cap and the body budget. The budget is
// given back when the request's context ends too (Close cancels it, and
// so does its deadline): a body left unclosed cannot keep its share.
func (t *capTransport) body(rc io.ReadCloser, limit int64, kind string, ctx context.Context, cancel context.CancelFunc, req *http.Request) *cappedBody {
	b := &cappedBody{rc: rc, limit: limit, kind: kind, ctx: ctx, parent: req.Context(), cancel: cancel, req: req, t: t}
	b.held.budget = t.budget
	if t.budget != nil {
		context.AfterFunc(ctx, b.held.releaseAll)
	}
	return b
}

// redirects counts the redirects that led to req: http.Client links each
// hop to the response that caused it.
func redirects(req *http.Request) int {
	n := 0
	for r := req; r.Response != nil && r.Response.Request != nil; r = r.Response.Request {
		n++
	}
	return n
}

func tooLarge(req *http.Request, kind string, limit int64, detail string) error {
	return fmt.Errorf("%s %s: %w: %s exceeds the %s size cap of %d bytes", req.Method, redactURL(req), ErrTooLarge, detail, kind, limit)
}

// redactURL drops query and user info: a redirect to object storage carries
// its credentials in the query.
func redactURL(req *http.Request) string {
	u := *req.URL
	u.RawQuery = ""
	u.User = nil
	return u.String()
}

// cappedBody counts what is read and fails once the cap is passed. It also
// owns the request's deadline, released on Close.
type cappedBody struct {
	rc     io.ReadCloser
	limit  int64 // -1: no cap
	kind   string
	read   int64
	ctx    context.Context
	parent context.Context
	cancel context.CancelFunc
	req    *http.Request
	t      *capTransport
	held   held // this body's share of the budget
}

func (b *cappedBody) Read(p []byte) (int, error) {
	if b.limit >= 0 {
		if b.read > b.limit {
			return 0, tooLarge(b.req, b.kind, b.limit, "body")
		}
		// Read at most one byte past the cap: enough to know it is passed.
		if room := b.limit - b.read + 1; int64(len(p)) > room {
			p = p[:room]
		}
	}
	k, ok := b.held.reserve(len(p))
	if !ok {
		b.held.releaseAll() // what it read so far is of no use now
		return 0, b.t.budget.exhausted(b.req)
	}
	n, err := b.rc.Read(p[:k])
	b.held.settle(k, n)
	b.read += int64(n)
	if err != nil {
		// At its end or broken, the body holds nothing more: the
		// reader has what it got.
		b.held.releaseAll()
	}
	if b.limit >= 0 && b.read > b.limit {
		b.held.releaseAll()
		return n - int(b.read-b.limit), tooLarge(b.req, b.kind, b.limit, "body")
	}
	if err != nil && err != io.EOF && errors.Is(b.ctx.Err(), context.DeadlineExceeded) && b.parent.Err() == nil {
		err = fmt.Errorf("%s %s: body not read within the %s request timeout: %w", b.req.Method, redactURL(b.req), b.t.timeout, err)
	}
	return n, err
}

func (b *cappedBody) Close() error {
	err := b.rc.Close()
	b.held.releaseAll() // before cancel: at once, not on AfterFunc's goroutine
	b.cancel()
	return err
}
