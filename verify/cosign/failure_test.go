package cosign

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/nri-image-verifier/nri-image-verifier/verify"
	"github.com/nri-image-verifier/nri-image-verifier/verify/registry"
)

// A registry that is down is no answer: an error, not a deny verdict.
func TestRegistryDownIsAnError(t *testing.T) {
	srv := imagetest.StartRegistryServer(t, nil)
	repo := strings.TrimPrefix(srv.URL, "http://") + "/app"
	signer := imagetest.NewSigner(t, imagetest.ECDSAP256)
	img := imagetest.PushImageConfig(t, repo+":v1")
	imagetest.SignLegacy(t, repo, img.Digest, signer, imagetest.SignOptions{})
	v := newVerifier(t, newClient(t, registry.Options{}), root{"default", signer})
	srv.Close()

	for _, s := range []verify.Subject{
		{Repository: repo, Digest: img.Digest},
		{Repository: repo, Digest: img.Digest, ConfigDigest: img.ConfigDigest},
	} {
		got, err := v.Verify(context.Background(), s, policy.With{})
		if err == nil {
			t.Fatalf("registry down: verdict %+v, want an error", got)
		}
		if registry.IsNotFound(err) || registry.IsDefinitive(err) {
			t.Fatalf("registry down reported as an answer: %v", err)
		}
		t.Logf("error: %v", err)
	}
}

// A 5xx while looking for signatures leaves the answer open...
func TestServerErrorIsAnError(t *testing.T) {
	srv := imagetest.StartRegistryServer(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "/referrers/") {
				http.Error(w, "boom", http.StatusInternalServerError)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	repo := strings.TrimPrefix(srv.URL, "http://") + "/app"
	signer := imagetest.NewSigner(t, imagetest.ECDSAP256)
	v := newVerifier(t, newClient(t, registry.Options{}), root{"default", signer})

	unsigned := imagetest.PushImage(t, repo+":unsigned")
	if got, err := v.Verify(context.Background(), verify.Subject{Repository: repo, Digest: unsigned}, policy.With{}); err == nil {
		t.Fatalf("referrers API failing: verdict %+v, want an error", got)
	}

	// ...unless what was found already meets the policy.
	signed := imagetest.PushImage(t, repo+":signed")
	imagetest.SignLegacy(t, repo, signed, signer, imagetest.SignOptions{})
	wantAllowed(t, check(t, v, verify.Subject{Repository: repo, Digest: signed}, policy.With{}), "default")
}

// A registry serving a huge manifest makes an error that names the cap.
func TestHugeManifestHitsTheCap(t *testing.T) {
	for _, chunked := range []bool{false, true} {
		t.Run("chunked="+strconv.FormatBool(chunked), func(t *testing.T) {
			srv := imagetest.StartRegistryServer(t, func(h http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, ".sig") {
						serveHuge(w, 64<<20, chunked)
						return
					}
					h.ServeHTTP(w, r)
				})
			})
			repo := strings.TrimPrefix(srv.URL, "http://") + "/app"
			d := imagetest.PushImage(t, repo+":v1")
			v := newVerifier(t, newClient(t, registry.Options{}), root{"default", imagetest.NewSigner(t, imagetest.ECDSAP256)})
			got, err := v.Verify(context.Background(), verify.Subject{Repository: repo, Digest: d}, policy.With{})
			if err == nil {
				t.Fatalf("huge manifest: verdict %+v, want an error", got)
			}
			if !errors.Is(err, registry.ErrTooLarge) || !strings.Contains(err.Error(), "signature manifest size cap of 262144 bytes") {
				t.Fatalf("error %q does not name the cap", err)
			}
			t.Logf("error: %v", err)
		})
	}
}

func serveHuge(w http.ResponseWriter, size int, chunked bool) {
	w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
	if !chunked {
		w.Header().Set("Content-Length", strconv.Itoa(size))
	}
	w.WriteHeader(http.StatusOK)
	buf := make([]byte, 32<<10)
	for i := range buf {
		buf[i] = ' '
	}
	for written := 0; written < size; written += len(buf) {
		if _, err := w.Write(buf); err != nil {
			return // the client hung up, as it should
		}
		if f, ok := w.(http.Flusher); ok && chunked {
			f.Flush()
		}
	}
}

// A registry that does not answer in time is an error too.
func TestSlowRegistryTimesOut(t *testing.T) {
	srv := imagetest.StartRegistryServer(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, ".sig") {
				select {
				case <-r.Context().Done():
				case <-time.After(5 * time.Second):
				}
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	repo := strings.TrimPrefix(srv.URL, "http://") + "/app"
	d := imagetest.PushImage(t, repo+":v1")
	v := newVerifier(t, newClient(t, registry.Options{Timeout: 200 * time.Millisecond}), root{"default", imagetest.NewSigner(t, imagetest.ECDSAP256)})
	start := time.Now()
	_, err := v.Verify(context.Background(), verify.Subject{Repository: repo, Digest: d}, policy.With{})
	if err == nil || !strings.Contains(err.Error(), "request timeout") {
		t.Fatalf("slow registry: error %v, want a timeout", err)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("gave up after %s", el)
	}
	t.Logf("error after %s: %v", time.Since(start).Round(time.Millisecond), err)
}

// How many requests a verification of a digest never seen before costs. Not
// an exact contract, but it must stay well under what peers need.
func TestRequestCount(t *testing.T) {
	host := imagetest.StartRegistry(t)
	repo := host + "/app"
	signer := imagetest.NewSigner(t, imagetest.ECDSAP256)

	legacy := imagetest.PushImageConfig(t, repo+":legacy")
	imagetest.SignLegacy(t, repo, legacy.Digest, signer, imagetest.SignOptions{})
	bundled := imagetest.PushImageConfig(t, repo+":bundle")
	imagetest.SignBundle(t, repo, bundled.Digest, signer, imagetest.SignOptions{})
	idx := imagetest.PushIndex(t, repo+":index")
	imagetest.SignLegacy(t, repo, idx.Digest, signer, imagetest.SignOptions{})
	unsigned := imagetest.PushImage(t, repo+":unsigned")

	for _, tc := range []struct {
		name string
		s    verify.Subject
	}{
		{"legacy, no config", verify.Subject{Repository: repo, Digest: legacy.Digest}},
		{"legacy + config", verify.Subject{Repository: repo, Digest: legacy.Digest, ConfigDigest: legacy.ConfigDigest}},
		{"bundle + config", verify.Subject{Repository: repo, Digest: bundled.Digest, ConfigDigest: bundled.ConfigDigest}},
		{"index + config", verify.Subject{Repository: repo, Digest: idx.Digest, ConfigDigest: idx.Platforms[0].ConfigDigest}},
		{"unsigned", verify.Subject{Repository: repo, Digest: unsigned}},
	} {
		warmTag := repo + ":warm-" + tc.name[:strings.IndexAny(tc.name+" ", " ,")]
		t.Run(tc.name, func(t *testing.T) {
			// A fresh client: the first request to the repository pays
			// for the ping too.
			cold := &counter{next: http.DefaultTransport.(*http.Transport).Clone(), log: t.Logf}
			v := newVerifier(t, newClient(t, registry.Options{Transport: cold}), root{"default", signer})
			check(t, v, tc.s, policy.With{})
			t.Logf("%s: %d requests on a fresh client", tc.name, cold.n.Load())
			if n := cold.n.Load(); n >= 12 {
				t.Fatalf("%d requests", n)
			}
			// The same client, another digest of the repository: no ping.
			other := imagetest.PushImage(t, warmTag)
			imagetest.SignLegacy(t, repo, other, signer, imagetest.SignOptions{})
			cold.n.Store(0)
			check(t, v, verify.Subject{Repository: repo, Digest: other}, policy.With{})
			t.Logf("%s: then %d requests for another signed digest", tc.name, cold.n.Load())
		})
	}
}
