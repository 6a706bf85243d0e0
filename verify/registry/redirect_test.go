package registry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
)

// A registry that answers every request with a redirect to itself is given
// up on after maxRedirects hops (go-containerregistry's redirect check has
// no limit of its own), and a chain of a few redirects is still followed.
func TestRedirectLoopStops(t *testing.T) {
	var hops atomic.Int64
	var loop, on atomic.Bool
	srv := imagetest.StartRegistryServer(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// Only reads, once the image is pushed: go-containerregistry's
			// writer follows redirects without limit too.
			if !on.Load() || r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/manifests/") {
				h.ServeHTTP(w, r)
				return
			}
			n := hops.Add(1)
			if loop.Load() || !strings.HasSuffix(r.URL.RawQuery, "hop=3") {
				http.Redirect(w, r, fmt.Sprintf("%s?hop=%d", r.URL.Path, n), http.StatusTemporaryRedirect)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	repo := mustRepo(t, strings.TrimPrefix(srv.URL, "http://")+"/app")
	img := imagetest.PushImageConfig(t, repo.String()+":v1")
	c := newClient(t, Options{Timeout: time.Second})
	on.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	if _, err := c.Manifest(ctx, repo.Digest(img.Digest)); err != nil {
		t.Fatalf("three redirects: %v", err)
	}

	loop.Store(true)
	hops.Store(0)
	_, err := c.Manifest(ctx, repo.Digest(img.Digest))
	if !errors.Is(err, ErrTooManyRedirects) || !strings.Contains(err.Error(), "stopped after 10 redirects") {
		t.Fatalf("redirect loop: %v", err)
	}
	if n := hops.Load(); n > maxRedirects+1 {
		t.Errorf("%d requests for one manifest", n)
	}
	t.Log(err)
}

// A registry's error answer names the HTTP status even when the registry
// sent a JSON error (which go-containerregistry words without it), keeps
// the registry's own text short, and still unwraps to what IsNotFound and
// the retry logic look at.
func TestRegistryErrorNamesStatus(t *testing.T) {
	var status atomic.Int64
	var body atomic.Value
	srv := imagetest.StartRegistryServer(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if code := int(status.Load()); code != 0 && strings.Contains(r.URL.Path, "/manifests/") {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(code)
				fmt.Fprint(w, body.Load())
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	repo := mustRepo(t, strings.TrimPrefix(srv.URL, "http://")+"/app")
	img := imagetest.PushImageConfig(t, repo.String()+":v1")
	c := newClient(t, Options{Timeout: time.Second})

	for _, tc := range []struct {
		code     int
		body     string
		want     []string
		notFound bool
	}{
		{http.StatusTooManyRequests, `{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}`,
			[]string{"HTTP 429 Too Many Requests: TOOMANYREQUESTS: slow down"}, false},
		{http.StatusNotFound, `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"gone"}]}`,
			[]string{"HTTP 404 Not Found: MANIFEST_UNKNOWN: gone"}, true},
		// A registry that says "unknown" with a 500 is not a not-found.
		{http.StatusInternalServerError, `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"lies"}]}`,
			[]string{"HTTP 500 Internal Server Error"}, false},
		{http.StatusBadGateway, `<html>` + strings.Repeat("proxy error ", 5000) + `</html>`,
			[]string{"HTTP 502 Bad Gateway: <html>proxy error", "more bytes)"}, false},
		{http.StatusForbidden, ``, []string{"HTTP 403 Forbidden"}, false},
	} {
		status.Store(int64(tc.code))
		body.Store(tc.body)
		_, err := c.Manifest(context.Background(), repo.Digest(img.Digest))
		if err == nil {
			t.Fatalf("%d: no error", tc.code)
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%d: %q does not say %q", tc.code, err, w)
			}
		}
		if IsNotFound(err) != tc.notFound {
			t.Errorf("%d: IsNotFound = %v", tc.code, !tc.notFound)
		}
		if len(err.Error()) > 600 {
			t.Errorf("%d: error is %d bytes long", tc.code, len(err.Error()))
		}
	}
}
