package registry

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
)

func TestSizeCaps(t *testing.T) {
	var huge atomic.Bool
	var chunked atomic.Bool
	srv := imagetest.StartRegistryServer(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if huge.Load() && strings.Contains(r.URL.Path, "/manifests/") {
				if !chunked.Load() {
					w.Header().Set("Content-Length", strconv.Itoa(8<<20))
				}
				w.WriteHeader(http.StatusOK)
				chunk := []byte(strings.Repeat(" ", 64<<10))
				for i := 0; i < 128; i++ {
					if _, err := w.Write(chunk); err != nil {
						return
					}
					w.(http.Flusher).Flush()
				}
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	repo := mustRepo(t, strings.TrimPrefix(srv.URL, "http://")+"/app")
	img := imagetest.PushImageConfig(t, repo.String()+":v1")
	ctx := context.Background()

	// A blob over a small cap.
	c := newClient(t, Options{MaxBlobBytes: 100})
	_, err := c.Blob(ctx, repo.Digest(img.ConfigDigest))
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "blob size cap of 100 bytes") {
		t.Fatalf("small blob cap: %v", err)
	}
	t.Logf("blob: %v", err)

	huge.Store(true)
	for _, ch := range []bool{false, true} {
		chunked.Store(ch)
		_, err := newClient(t, Options{}).Manifest(ctx, repo.Tag("v1"))
		if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "manifest size cap of 1048576 bytes") {
			t.Fatalf("chunked=%v: %v", ch, err)
		}
		t.Logf("chunked=%v: %v", ch, err)
	}
}

func TestRequestTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := imagetest.StartRegistryServer(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "/manifests/") {
				select {
				case <-release:
				case <-r.Context().Done():
				}
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	defer close(release)
	repo := mustRepo(t, strings.TrimPrefix(srv.URL, "http://")+"/app")
	c := newClient(t, Options{Timeout: 100 * time.Millisecond})
	start := time.Now()
	_, err := c.Manifest(context.Background(), repo.Tag("v1"))
	if err == nil || !strings.Contains(err.Error(), "100ms request timeout") || IsNotFound(err) {
		t.Fatalf("got %v", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("took %s", el)
	}
}

// All requests share one transport: connections are reused, not piled up.
func TestConnectionReuse(t *testing.T) {
	host := imagetest.StartRegistry(t)
	repo := mustRepo(t, host+"/app")
	var digests []string
	for i := 0; i < 5; i++ {
		digests = append(digests, imagetest.PushImageConfig(t, repo.String()+":v"+strconv.Itoa(i)).ConfigDigest)
	}
	var dials atomic.Int64
	d := &net.Dialer{}
	tr := NewTransport()
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return d.DialContext(ctx, network, addr)
	}
	c := newClient(t, Options{Transport: tr})
	var wg sync.WaitGroup
	for round := 0; round < 4; round++ {
		for _, dg := range digests {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := c.Blob(context.Background(), repo.Digest(dg)); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
	}
	// 20 requests plus the ping; at most one connection per concurrent
	// request of the first round, plus the https ping attempt.
	if n := dials.Load(); n > 7 {
		t.Fatalf("%d connections dialled for 21 requests", n)
	}
	t.Logf("%d connections for 21 requests", dials.Load())
}
