package notaryv1

import (
	"context"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/notarytest"
	"github.com/nri-image-verifier/nri-image-verifier/verify"
	"github.com/nri-image-verifier/nri-image-verifier/verify/registry"
)

// Tests that put something between the validator and the real
// notary-server: a recorder that replays old metadata, a token service, a
// TLS front, a slow link.

func proxyTo(t *testing.T, srv *notarytest.Server) *httputil.ReverseProxy {
	t.Helper()
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return httputil.NewSingleHostReverseProxy(u)
}

// replayer records the server's answers, then serves them again in place
// of the server's current ones: an attacker (or a stale mirror) offering
// older, validly signed trust data.
type replayer struct {
	next http.Handler
	mu   sync.Mutex
	mode string // "record", "pass" or "replay"
	seen map[string][]byte
}

func (p *replayer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	mode := p.mode
	old, ok := p.seen[r.URL.Path]
	p.mu.Unlock()
	if mode == "replay" {
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(old)
		return
	}
	rec := httptest.NewRecorder()
	p.next.ServeHTTP(rec, r)
	if mode == "record" && rec.Code == http.StatusOK {
		p.mu.Lock()
		p.seen[r.URL.Path] = rec.Body.Bytes()
		p.mu.Unlock()
	}
	for k, vs := range rec.Header() {
		w.Header()[k] = vs
	}
	w.WriteHeader(rec.Code)
	w.Write(rec.Body.Bytes())
}

func (p *replayer) set(mode string) { p.mu.Lock(); p.mode = mode; p.mu.Unlock() }

// TestRollback: a verifier that has seen newer trust data refuses older
// versions, although they are validly signed; one that has not, cannot
// tell (TUF's rollback protection lives in what the client remembers).
func TestRollback(t *testing.T) {
	w := newWorld(t)
	old := imagetest.PushImageConfig(t, w.reg+"/app:v1")
	repo := w.srv.NewRepo(t, w.reg+"/app", notarytest.ECDSA)
	repo.Sign("v1", old.Digest)
	p := &replayer{next: proxyTo(t, w.srv), mode: "record", seen: map[string][]byte{}}
	front := httptest.NewServer(p)
	defer front.Close()
	v, with := newValidator(t, front.URL, "", key{"default", repo.RootKeyPEM()})

	wantAllowed(t, check(t, newVerifier(t, v, Options{}), w.subject("app", old), with)) // records v1 state
	p.set("pass")
	newer := imagetest.PushImageConfig(t, w.reg+"/app:v2")
	repo.Sign("v2", newer.Digest)
	seenNew := newVerifier(t, v, Options{})
	wantAllowed(t, check(t, seenNew, w.subject("app", newer), with))

	p.set("replay")
	wantDenied(t, check(t, seenNew, w.subject("app", old), with), "rollback", "older than version")
	// A verifier with no memory of the newer state accepts the old one.
	wantAllowed(t, check(t, newVerifier(t, v, Options{}), w.subject("app", old), with))
}

// TestAuth: a notary server behind token auth, as Docker Hub's is. The
// credentials are the docker config entry of the notary server's host.
func TestAuth(t *testing.T) {
	w := newWorld(t)
	img := imagetest.PushImageConfig(t, w.reg+"/app:v1")
	repo := w.srv.NewRepo(t, w.reg+"/app", notarytest.ECDSA)
	repo.Sign("v1", img.Digest)
	next := proxyTo(t, w.srv)
	var tokens, unauthorized atomic.Int64
	var front *httptest.Server
	front = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/token" {
			tokens.Add(1)
			u, p, ok := r.BasicAuth()
			want := "repository:" + w.reg + "/app:pull"
			if !ok || u != "alice" || p != "s3cret" || r.URL.Query().Get("scope") != want || r.URL.Query().Get("service") != "notary" {
				http.Error(rw, "no", http.StatusUnauthorized)
				return
			}
			fmt.Fprint(rw, `{"token": "tok-1", "expires_in": 300}`)
			return
		}
		if r.Header.Get("Authorization") != "Bearer tok-1" {
			unauthorized.Add(1)
			rw.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="%s/token",service="notary",scope="repository:%s/app:pull"`, front.URL, w.reg))
			http.Error(rw, "token please", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(rw, r)
	}))
	defer front.Close()
	v, with := newValidator(t, front.URL, "", key{"default", repo.RootKeyPEM()})
	host := strings.TrimPrefix(front.URL, "http://")

	kc := func(user, pass string) Options {
		cfg := filepath.Join(t.TempDir(), "config.json")
		auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
		if err := os.WriteFile(cfg, fmt.Appendf(nil, `{"auths": {%q: {"auth": %q}}}`, host, auth), 0o600); err != nil {
			t.Fatal(err)
		}
		k, err := registry.DockerConfigKeychain(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return Options{Keychain: k}
	}

	nv := newVerifier(t, v, kc("alice", "s3cret"))
	wantAllowed(t, check(t, nv, w.subject("app", img), with))
	wantAllowed(t, check(t, nv, w.subject("app", img), with))
	if n := tokens.Load(); n != 1 {
		t.Errorf("token requests: %d, want 1 (the token is kept)", n)
	}
	if n := unauthorized.Load(); n != 1 {
		t.Errorf("challenged requests: %d, want 1", n)
	}

	_, err := verifyOnce(newVerifier(t, v, kc("alice", "wrong")), w.subject("app", img), with)
	if err == nil || !strings.Contains(err.Error(), "authentication failed: token service") || !strings.Contains(err.Error(), "401") {
		t.Errorf("wrong password: error %v", err)
	}
	_, err = verifyOnce(newVerifier(t, v, Options{}), w.subject("app", img), with)
	if err == nil || !strings.Contains(err.Error(), "authentication failed") {
		t.Errorf("no credentials: error %v", err)
	}
}

// TestCert: a notary server with its own CA is trusted through the
// validator's cert, and not without it.
func TestCert(t *testing.T) {
	w := newWorld(t)
	img := imagetest.PushImageConfig(t, w.reg+"/app:v1")
	repo := w.srv.NewRepo(t, w.reg+"/app", notarytest.ECDSA)
	repo.Sign("v1", img.Digest)
	front := httptest.NewTLSServer(proxyTo(t, w.srv))
	defer front.Close()
	ca := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: front.Certificate().Raw}))
	k := key{"default", repo.RootKeyPEM()}

	v, with := newValidator(t, front.URL, "", k)
	_, err := verifyOnce(newVerifier(t, v, Options{}), w.subject("app", img), with)
	if err == nil || !strings.Contains(err.Error(), "unreachable") || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Errorf("without cert: error %v, want an unknown authority", err)
	}
	v.Cert = ca
	wantAllowed(t, check(t, newVerifier(t, v, Options{}), w.subject("app", img), with))
}

// TestSlowServer: a server that does not answer costs at most the
// request timeout or the caller's deadline, and is an error.
func TestSlowServer(t *testing.T) {
	w := newWorld(t)
	img := imagetest.PushImageConfig(t, w.reg+"/app:v1")
	repo := w.srv.NewRepo(t, w.reg+"/app", notarytest.ECDSA)
	repo.Sign("v1", img.Digest)
	front := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(time.Minute):
		}
	}))
	defer front.Close()
	v, with := newValidator(t, front.URL, "", key{"default", repo.RootKeyPEM()})

	for _, tc := range []struct {
		name    string
		opts    Options
		ctxWait time.Duration
	}{
		{"request timeout", Options{Timeout: 300 * time.Millisecond}, time.Minute},
		{"caller deadline", Options{}, 300 * time.Millisecond},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), tc.ctxWait)
		start := time.Now()
		_, err := newVerifier(t, v, tc.opts).Verify(ctx, w.subject("app", img), with)
		cancel()
		if d := time.Since(start); err == nil || d > 3*time.Second {
			t.Errorf("%s: error %v after %s, want an error within about 300ms", tc.name, err, d)
		}
		t.Logf("%s: %v", tc.name, err)
	}
}

// TestConcurrent: verifications of one repository share its cache safely
// (run with -race).
func TestConcurrent(t *testing.T) {
	w := newWorld(t)
	a := imagetest.PushImageConfig(t, w.reg+"/app:a")
	b := imagetest.PushImageConfig(t, w.reg+"/app:b")
	repo := w.srv.NewRepo(t, w.reg+"/app", notarytest.ECDSA)
	repo.Sign("a", a.Digest)
	v, with := newValidator(t, w.srv.URL, "", key{"default", repo.RootKeyPEM()})
	nv := newVerifier(t, v, Options{MaxRepositories: 2})
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for i := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := w.subject("app", a)
			want := true
			switch i % 4 {
			case 1:
				s, want = w.subject("app", b), false
			case 2:
				s, want = verify.Subject{Repository: fmt.Sprintf("%s/other%d", w.reg, i), Digest: a.Digest}, false
			}
			got, err := verifyOnce(nv, s, with)
			if err != nil || got.Allowed != want {
				errs <- fmt.Sprintf("%s: allowed=%v err=%v (%s)", s.Repository, got.Allowed, err, got.Reason)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
