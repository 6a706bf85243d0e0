// Package imagetest builds the world signature tests need, in process and on
// 127.0.0.1 only: an OCI registry (go-containerregistry's pkg/registry, with
// the referrers API), random images and indexes, and real cosign
// signatures in both formats cosign writes (the v2 `.sig` tag and the v3
// Sigstore bundle referrer), made with the same libraries cosign uses.
//
// Every helper takes a testing.TB and fails it on error.
package imagetest

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
)

// StartRegistry serves an in-memory registry with OCI 1.1 referrers support
// on 127.0.0.1 until the test ends, and returns its host ("127.0.0.1:port").
func StartRegistry(t testing.TB) string {
	t.Helper()
	return strings.TrimPrefix(StartRegistryServer(t, nil).URL, "http://")
}

// StartRegistryServer is StartRegistry for tests that need the server:
// to stop it, or to put a handler in front of the registry (wrap may be
// nil). The server is closed when the test ends.
func StartRegistryServer(t testing.TB, wrap func(http.Handler) http.Handler) *httptest.Server {
	t.Helper()
	return serve(t, wrap, registry.WithReferrersSupport(true))
}

// StartRegistryWithoutReferrers is StartRegistry for a registry without the
// OCI 1.1 referrers API, as many still are: clients (cosign, and the
// helpers here) then keep the referrers list in the tag sha256-<hex>.
func StartRegistryWithoutReferrers(t testing.TB) string {
	t.Helper()
	return strings.TrimPrefix(serve(t, nil).URL, "http://")
}

func serve(t testing.TB, wrap func(http.Handler) http.Handler, opts ...registry.Option) *httptest.Server {
	t.Helper()
	var h http.Handler = registry.New(append(opts, registry.Logger(log.New(io.Discard, "", 0)))...)
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h) // listens on 127.0.0.1
	t.Cleanup(srv.Close)
	return srv
}
