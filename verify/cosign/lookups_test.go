package cosign

import (
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/nri-image-verifier/nri-image-verifier/verify"
	"github.com/nri-image-verifier/nri-image-verifier/verify/registry"
)

// recorder remembers the paths of the requests that reach the network.
type recorder struct {
	next  http.RoundTripper
	mu    sync.Mutex
	paths []string
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.paths = append(r.paths, req.URL.Path)
	r.mu.Unlock()
	return r.next.RoundTrip(req)
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.paths
	r.paths = nil
	return p
}

func count(paths []string, sub string) int {
	n := 0
	for _, p := range paths {
		if strings.Contains(p, sub) {
			n++
		}
	}
	return n
}

// Once a repository's images have been found signed in one format, the next
// digest is looked up there first: a legacy-signed image with its config
// costs the chain check and the .sig manifest, no referrers list, and no
// payload blob either, cosign's default payload being known to the byte.
func TestHintedLookupCostsTwoRequests(t *testing.T) {
	host := imagetest.StartRegistry(t)
	repo := host + "/app"
	signer := imagetest.NewSigner(t, imagetest.ECDSAP256)
	rec := &recorder{next: http.DefaultTransport.(*http.Transport).Clone()}
	v := newVerifier(t, newClient(t, registry.Options{Transport: rec}), root{"default", signer})

	for i, kind := range []string{"first", "second", "third"} {
		img := imagetest.PushImageConfig(t, repo+":"+kind)
		imagetest.SignLegacy(t, repo, img.Digest, signer, imagetest.SignOptions{})
		rec.take()
		wantAllowed(t, check(t, v, verify.Subject{Repository: repo, Digest: img.Digest, ConfigDigest: img.ConfigDigest}, policy.With{}), "default")
		paths := rec.take()
		t.Logf("%s digest: %v", kind, paths)
		if i == 0 {
			continue // no hint yet: everything at once
		}
		if len(paths) != 2 || count(paths, "/referrers/") != 0 || count(paths, "/blobs/") != 0 {
			t.Fatalf("%s digest: %d requests %v, want 2: no referrers list, no payload", kind, len(paths), paths)
		}
	}
}

// A hint only orders the lookups: what the first stage misses, the second
// finds. Never a skipped format that could have met the policy.
func TestHintNeverSkipsAFormat(t *testing.T) {
	host := imagetest.StartRegistry(t)
	repo := host + "/app"
	alice := imagetest.NewSigner(t, imagetest.ECDSAP256)
	bob := imagetest.NewSigner(t, imagetest.Ed25519)
	rec := &recorder{next: http.DefaultTransport.(*http.Transport).Clone()}
	v := newVerifier(t, newClient(t, registry.Options{Transport: rec}), root{"alice", alice}, root{"bob", bob})
	subject := func(d imagetest.Image) verify.Subject {
		return verify.Subject{Repository: repo, Digest: d.Digest, ConfigDigest: d.ConfigDigest}
	}

	// The hint becomes "legacy".
	legacy := imagetest.PushImageConfig(t, repo+":legacy")
	imagetest.SignLegacy(t, repo, legacy.Digest, alice, imagetest.SignOptions{})
	wantAllowed(t, check(t, v, subject(legacy), policy.With{TrustRoot: "alice"}), "alice")

	// The publisher moved to bundles.
	bundled := imagetest.PushImageConfig(t, repo+":bundle")
	imagetest.SignBundle(t, repo, bundled.Digest, alice, imagetest.SignOptions{})
	rec.take()
	wantAllowed(t, check(t, v, subject(bundled), policy.With{TrustRoot: "alice"}), "alice")
	if paths := rec.take(); count(paths, ".sig") != 1 || count(paths, "/referrers/") != 1 {
		t.Fatalf("want the .sig tag tried, then the referrers: %v", paths)
	}

	// Two roots needed, one per format, after a hint of either.
	both := imagetest.PushImageConfig(t, repo+":both")
	imagetest.SignLegacy(t, repo, both.Digest, alice, imagetest.SignOptions{})
	imagetest.SignBundle(t, repo, both.Digest, bob, imagetest.SignOptions{})
	wantAllowed(t, check(t, v, subject(both), policy.With{TrustRoot: "*"}), "alice", "bob")

	// A signature only on the platform manifest of an index (recursive),
	// after a hint of the top-level digest.
	idx := imagetest.PushIndex(t, repo+":index")
	imagetest.SignLegacy(t, repo, idx.Platforms[0].Digest, alice, imagetest.SignOptions{})
	wantAllowed(t, check(t, v, verify.Subject{Repository: repo, Digest: idx.Digest, ConfigDigest: idx.Platforms[0].ConfigDigest},
		policy.With{TrustRoot: "alice"}), "alice")

	// Unsigned: every place is still looked at before the denial.
	unsigned := imagetest.PushImageConfig(t, repo+":unsigned")
	rec.take()
	wantDenied(t, check(t, v, subject(unsigned), policy.With{TrustRoot: "alice"}), "no cosign signature found")
	if paths := rec.take(); count(paths, ".sig") != 1 || count(paths, "/referrers/") != 1 {
		t.Fatalf("want both formats looked up before denying: %v", paths)
	}
}

func TestHintsBounded(t *testing.T) {
	var h hints
	for i := range maxHints + 10 {
		h.put(strings.Repeat("r", i%7)+string(rune('a'+i%26))+strings.Repeat("x", i), topLegacy)
	}
	if n := len(h.m); n > maxHints {
		t.Fatalf("%d hints kept, want at most %d", n, maxHints)
	}
	h.put("repo", 0)
	if h.get("repo") != 0 {
		t.Fatal("an empty hint was stored")
	}
}

// A payload other than cosign's default for the digest (here one naming
// another digest) is fetched and judged as ever.
func TestUnexpectedPayloadIsFetched(t *testing.T) {
	host := imagetest.StartRegistry(t)
	repo := host + "/app"
	signer := imagetest.NewSigner(t, imagetest.ECDSAP256)
	rec := &recorder{next: http.DefaultTransport.(*http.Transport).Clone()}
	v := newVerifier(t, newClient(t, registry.Options{Transport: rec}), root{"default", signer})
	img := imagetest.PushImage(t, repo+":v1")
	other := imagetest.PushImage(t, repo+":other")
	imagetest.SignLegacy(t, repo, img, signer, imagetest.SignOptions{PayloadDigest: other})
	rec.take()
	wantDenied(t, check(t, v, verify.Subject{Repository: repo, Digest: img}, policy.With{}), "signature names digest "+other)
	if paths := rec.take(); count(paths, "/blobs/") != 1 {
		t.Fatalf("payload not fetched: %v", paths)
	}
}
