package registry

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nri-image-verifier/nri-image-verifier/internal/faulttest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
)

// stallingBlobs serves every blob GET as n bytes of filler and then
// stalls, until the client hangs up; other requests reach the registry.
func stallingBlobs(t *testing.T, n int) (host string, on *atomic.Bool) {
	on = &atomic.Bool{}
	srv := imagetest.StartRegistryServer(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !on.Load() || r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/") {
				next.ServeHTTP(w, r)
				return
			}
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte(strings.Repeat(" ", n)))
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		})
	})
	on.Store(true)
	return strings.TrimPrefix(srv.URL, "http://"), on
}

// waitInUse polls until the budget in use satisfies ok.
func waitInUse(t *testing.T, c *Client, ok func(int64) bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok(c.BodyBytesInUse()) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: budget in use stays at %d", what, c.BodyBytesInUse())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Bodies that send part of themselves and stall hold the budget; once it
// is spent, another read fails at once with an error that says so, and
// when the stalled requests end the budget drains to zero.
func TestBodyBudgetExhaustedFailsFast(t *testing.T) {
	const part = 768 << 10
	host, on := stallingBlobs(t, part)
	repo := mustRepo(t, host+"/app")
	on.Store(false)
	img := imagetest.PushImageConfig(t, repo.String()+":v1")
	on.Store(true)
	c := newClient(t, Options{MaxManifestBytes: 1 << 20, MaxSignatureBytes: 1 << 20, MaxBlobBytes: 1 << 20, BodyBudget: 2 << 20, Timeout: 30 * time.Second})

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = c.Blob(ctx, repo.Digest(img.ConfigDigest))
		}()
	}
	waitInUse(t, c, func(n int64) bool { return n >= 2*part }, "two stalled bodies")

	start := time.Now()
	_, err := c.Blob(context.Background(), repo.Digest(img.ConfigDigest))
	el := time.Since(start)
	if !errors.Is(err, ErrBodyBudget) || !strings.Contains(err.Error(), "node-wide registry body budget of 2 MiB exhausted") || !strings.Contains(err.Error(), "retry") {
		t.Fatalf("third body: %v, want the budget's error", err)
	}
	if el > 2*time.Second {
		t.Fatalf("third body failed after %s, want at once", el)
	}
	if IsNotFound(err) || IsDefinitive(err) {
		t.Fatalf("budget error %v must be transient", err)
	}
	t.Logf("after %s: %v", el.Round(time.Millisecond), err)
	if s := c.BodyBudget(); s.Refused == 0 || s.Limit != 2<<20 {
		t.Errorf("budget stats %+v, want a refusal counted against 2 MiB", s)
	}

	cancel()
	wg.Wait()
	waitInUse(t, c, func(n int64) bool { return n == 0 }, "after the stalled requests ended")
	on.Store(false)
	if _, err := c.Blob(context.Background(), repo.Digest(img.ConfigDigest)); err != nil {
		t.Fatalf("budget free again: %v", err)
	}
}

// However requests end (errors, resets, timeouts, caps, redirect loops,
// auth loops, cancellation), the budget they held comes back: nothing
// leaks.
func TestBodyBudgetDrains(t *testing.T) {
	host := imagetest.StartRegistry(t)
	img := imagetest.PushImageConfig(t, host+"/app:v1")
	p, err := faulttest.Start(host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	repo := mustRepo(t, p.Addr()+"/app")
	c := newClient(t, Options{Timeout: 300 * time.Millisecond})

	faults := map[string]faulttest.Fault{
		"500": faulttest.Status(http.StatusInternalServerError, ""),
		"500, long body": func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(strings.Repeat(" ", 1<<20)))
		},
		"404":             faulttest.Status(http.StatusNotFound, ""),
		"429":             faulttest.Status(http.StatusTooManyRequests, "0"),
		"reset":           faulttest.ResetMidBody(),
		"slow body":       faulttest.SlowBody(20 * time.Millisecond),
		"slow headers":    faulttest.SlowHeaders(time.Second),
		"huge":            faulttest.Huge(64<<20, false, "application/vnd.oci.image.manifest.v1+json"),
		"huge, announced": faulttest.Huge(64<<20, true, "application/vnd.oci.image.manifest.v1+json"),
		"401 loop":        faulttest.Unauthorized(),
		"redirect loop":   faulttest.Redirect("http://" + p.Addr()),
		"none":            nil,
	}
	requests := map[string]func(context.Context) error{
		"manifest":  func(ctx context.Context) error { return second(c.Manifest(ctx, repo.Digest(img.Digest))) },
		"tag":       func(ctx context.Context) error { return second(c.Manifest(ctx, repo.Tag("v1"))) },
		"blob":      func(ctx context.Context) error { return second(c.Blob(ctx, repo.Digest(img.ConfigDigest))) },
		"referrers": func(ctx context.Context) error { return second(c.Referrers(ctx, repo.Digest(img.Digest), "x")) },
	}
	for name, f := range faults {
		if f == nil {
			p.Clear()
		} else {
			p.Set(faulttest.Rule{Kinds: []faulttest.Kind{faulttest.KindManifest, faulttest.KindTag, faulttest.KindBlob, faulttest.KindReferrers}, Fault: f})
		}
		var wg sync.WaitGroup
		for what, do := range requests {
			for _, cut := range []time.Duration{0, 30 * time.Millisecond} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ctx := context.Background()
					if cut > 0 { // the caller gives up midway
						var cancel context.CancelFunc
						ctx, cancel = context.WithTimeout(ctx, cut)
						defer cancel()
					}
					if err := do(ctx); err != nil {
						t.Logf("%s, %s, cut %s: %v", name, what, cut, err)
					}
				}()
			}
		}
		wg.Wait()
		waitInUse(t, c, func(n int64) bool { return n == 0 }, name)
	}
}

// A budget below the largest size cap could never admit such a response.
func TestBodyBudgetBelowCapRefused(t *testing.T) {
	if _, err := New(Options{BodyBudget: 1 << 20, MaxBlobBytes: 4 << 20}); err == nil || !strings.Contains(err.Error(), "smaller than the largest size cap") {
		t.Fatalf("got %v", err)
	}
}

// A body its reader neither finishes nor closes gives its share back when
// its request's deadline passes.
func TestBodyBudgetReleasedAtDeadline(t *testing.T) {
	host, _ := stallingBlobs(t, 64<<10)
	budget := &bodyBudget{limit: 1 << 20}
	tr := &capTransport{next: NewTransport(), timeout: 200 * time.Millisecond, caps: [...]int64{1 << 20, 1 << 20, 1 << 20, 1 << 20}, budget: budget}
	req, err := http.NewRequest(http.MethodGet, "http://"+host+"/v2/app/blobs/sha256:"+strings.Repeat("0", 64), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := resp.Body.Read(make([]byte, 4096)); n == 0 || err != nil {
		t.Fatalf("read %d: %v", n, err)
	}
	if budget.used.Load() == 0 {
		t.Fatal("a read body holds nothing of the budget")
	}
	deadline := time.Now().Add(3 * time.Second)
	for budget.used.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("unclosed body still holds %d bytes after its deadline", budget.used.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = resp.Body.Close()
	if budget.used.Load() != 0 {
		t.Fatalf("close after release: %d in use", budget.used.Load())
	}
}
