package notaryv1

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/notarytest"
	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/nri-image-verifier/nri-image-verifier/verify"
)

// world is a loopback registry and a real notary-server holding trust data
// published with notary's client, as DOCKER_CONTENT_TRUST=1 pushes leave it.
type world struct {
	reg string
	srv *notarytest.Server
}

func newWorld(t *testing.T) *world {
	return &world{reg: imagetest.StartRegistry(t), srv: notarytest.Start(t)}
}

func (w *world) subject(repo string, img imagetest.Image) verify.Subject {
	return verify.Subject{Repository: w.reg + "/" + repo, Digest: img.Digest, ConfigDigest: img.ConfigDigest}
}

// TestVerify covers the decisions against one notary-server: each case
// names the reason it must give.
func TestVerify(t *testing.T) {
	w := newWorld(t)
	h := w.reg

	// app: root ECDSA, tags in the targets role.
	v1 := imagetest.PushImageConfig(t, h+"/app:v1")
	unsigned := imagetest.PushImageConfig(t, h+"/app:v2")
	signedV3 := imagetest.PushImageConfig(t, h+"/app:v3")
	app := w.srv.NewRepo(t, h+"/app", notarytest.ECDSA)
	app.Sign("v1", v1.Digest)
	app.Sign("v3", signedV3.Digest)
	// v3 is then pushed again: the registry's v3 is no longer what was signed.
	repushedV3 := imagetest.PushImageConfig(t, h+"/app:v3")

	// rsa: root RSA.
	rsaImg := imagetest.PushImageConfig(t, h+"/rsa:v1")
	rsaRepo := w.srv.NewRepo(t, h+"/rsa", notarytest.RSA)
	rsaRepo.Sign("v1", rsaImg.Digest)

	// never: pushed, never signed.
	never := imagetest.PushImageConfig(t, h+"/never:v1")

	appKey := key{"default", app.RootKeyPEM()}
	url := w.srv.URL

	t.Run("signed tag allowed", func(t *testing.T) {
		v, with := newValidator(t, url, "", appKey)
		got := check(t, newVerifier(t, v, Options{}), w.subject("app", v1), with)
		wantAllowed(t, got, "targets as v1", v1.Digest)
		if len(got.Signers) != 1 || got.Signers[0] != "default" {
			t.Errorf("signers = %v", got.Signers)
		}
	})
	t.Run("RSA root allowed", func(t *testing.T) {
		v, with := newValidator(t, url, "", key{"default", rsaRepo.RootKeyPEM()})
		wantAllowed(t, check(t, newVerifier(t, v, Options{}), w.subject("rsa", rsaImg), with), "targets as v1")
	})
	t.Run("unsigned tag denied", func(t *testing.T) {
		v, with := newValidator(t, url, "", appKey)
		wantDenied(t, check(t, newVerifier(t, v, Options{}), w.subject("app", unsigned), with),
			"digest mismatch", "no target of role targets", unsigned.Digest, "v1 -> "+v1.Digest)
	})
	t.Run("tag signed for another digest denied", func(t *testing.T) {
		v, with := newValidator(t, url, "", appKey)
		wantDenied(t, check(t, newVerifier(t, v, Options{}), w.subject("app", repushedV3), with),
			"digest mismatch", repushedV3.Digest, "v3 -> "+signedV3.Digest)
	})
	t.Run("no trust data denied", func(t *testing.T) {
		v, with := newValidator(t, url, "", appKey)
		wantDenied(t, check(t, newVerifier(t, v, Options{}), w.subject("never", never), with),
			"no trust data for "+h+"/never")
	})
	t.Run("wrong pinned root denied", func(t *testing.T) {
		v, with := newValidator(t, url, "", key{"default", otherKey(t)})
		wantDenied(t, check(t, newVerifier(t, v, Options{}), w.subject("app", v1), with),
			"root key not pinned", `trust root "default"`)
	})
	t.Run("another repository's root denied", func(t *testing.T) {
		v, with := newValidator(t, url, "", key{"default", rsaRepo.RootKeyPEM()})
		wantDenied(t, check(t, newVerifier(t, v, Options{}), w.subject("app", v1), with), "root key not pinned")
	})
	t.Run("trustRoot star needs every root", func(t *testing.T) {
		v, with := newValidator(t, url, `{trustRoot: "*"}`, appKey, key{"other", otherKey(t)})
		nv := newVerifier(t, v, Options{})
		wantDenied(t, check(t, nv, w.subject("app", v1), with), "root key not pinned", `not signed by trust root "other"`)
		// The same verifier, cache warm, for a rule naming the right root.
		wantAllowed(t, check(t, nv, w.subject("app", v1), policy.With{}))
		// And back: the cached root does not stand in for the pinning.
		wantDenied(t, check(t, nv, w.subject("app", v1), policy.With{TrustRoot: "other"}), "root key not pinned")
	})
	t.Run("expired timestamp denied", func(t *testing.T) {
		// notary-server signs timestamps for 14 days and re-signs expired
		// ones on request, so expiry is reached by the validator's clock.
		v, with := newValidator(t, url, "", appKey)
		later := func() time.Time { return time.Now().Add(15 * 24 * time.Hour) }
		wantDenied(t, check(t, newVerifier(t, v, Options{Now: later}), w.subject("app", v1), with),
			"expired: the timestamp metadata of "+h+"/app expired at")
	})
	t.Run("invalid subject denied", func(t *testing.T) {
		v, with := newValidator(t, url, "", appKey)
		nv := newVerifier(t, v, Options{})
		wantDenied(t, check(t, nv, verify.Subject{Repository: h + "/app", Digest: "sha256:abc"}, with), "image digest")
		wantDenied(t, check(t, nv, verify.Subject{Repository: "Not A Repo", Digest: v1.Digest}, with), "repository")
	})
	t.Run("answers over the cap denied", func(t *testing.T) {
		v, with := newValidator(t, url, "", appKey)
		wantDenied(t, check(t, newVerifier(t, v, Options{MaxMetadataBytes: 512}), w.subject("app", v1), with),
			"sent too much trust data", "exceeds 512 bytes")
	})
}

// TestDelegations: docker signs into targets/releases once delegation keys
// exist; a rule can require named delegations, each of which must have
// signed the digest.
func TestDelegations(t *testing.T) {
	w := newWorld(t)
	h := w.reg
	released := imagetest.PushImageConfig(t, h+"/team/app:v1")
	devOnly := imagetest.PushImageConfig(t, h+"/team/app:dev")
	both := imagetest.PushImageConfig(t, h+"/team/app:v2")
	repo := w.srv.NewRepo(t, h+"/team/app", notarytest.ECDSA)
	repo.AddDelegation("releases")
	repo.AddDelegation("dev")
	repo.Sign("v1", released.Digest, "releases")
	repo.Sign("dev", devOnly.Digest, "dev")
	repo.Sign("v2", both.Digest, "releases", "dev")
	k := key{"default", repo.RootKeyPEM()}

	cases := []struct {
		name, with string
		img        imagetest.Image
		allowed    bool
		reason     []string
	}{
		{"default role is releases", "", released, true, []string{"targets/releases as v1"}},
		{"releases required", "{delegations: [releases]}", released, true, []string{"targets/releases as v1"}},
		{"prefixed name", "{delegations: [targets/releases]}", released, true, nil},
		{"both required, both signed", "{delegations: [releases, dev]}", both, true, []string{"targets/releases as v2", "targets/dev as v2"}},
		{"both required, one signed", "{delegations: [releases, dev]}", released, false,
			[]string{"delegation missing: required delegation targets/dev", "has not signed " + released.Digest, "signed by targets/releases", "dev -> " + devOnly.Digest}},
		{"one required, not signed", "{delegations: [dev]}", released, false,
			[]string{"digest mismatch: no target of required delegation targets/dev", released.Digest}},
		{"undeclared delegation", "{delegations: [releases, qa]}", released, false,
			[]string{"delegation missing: targets/qa is not declared", "targets/releases", "targets/dev"}},
		{"not in releases", "", devOnly, false, []string{"digest mismatch", "role targets/releases"}},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			v, with := newValidator(t, w.srv.URL, tt.with, k)
			got := check(t, newVerifier(t, v, Options{}), verify.Subject{Repository: h + "/team/app", Digest: tt.img.Digest}, with)
			if tt.allowed {
				wantAllowed(t, got, tt.reason...)
			} else {
				wantDenied(t, got, tt.reason...)
			}
		})
	}
}

// TestServerDown: no answer from the notary server is an error (the gate
// denies, and retries soon), also when trust data is cached: the cached
// timestamp would otherwise keep a withdrawn signature valid for weeks.
func TestServerDown(t *testing.T) {
	w := newWorld(t)
	img := imagetest.PushImageConfig(t, w.reg+"/app:v1")
	repo := w.srv.NewRepo(t, w.reg+"/app", notarytest.ECDSA)
	repo.Sign("v1", img.Digest)
	v, with := newValidator(t, w.srv.URL, "", key{"default", repo.RootKeyPEM()})
	warm := newVerifier(t, v, Options{Timeout: 2 * time.Second})
	wantAllowed(t, check(t, warm, w.subject("app", img), with))

	w.srv.Stop()
	for name, nv := range map[string]*Verifier{"warm": warm, "cold": newVerifier(t, v, Options{Timeout: 2 * time.Second})} {
		start := time.Now()
		got, err := verifyOnce(nv, w.subject("app", img), with)
		if err == nil {
			t.Fatalf("%s: verdict %+v with the server down, want an error", name, got)
		}
		if !strings.Contains(err.Error(), "notary server "+strings.TrimPrefix(w.srv.URL, "http://")+" unreachable") ||
			!strings.Contains(err.Error(), "connection refused") {
			t.Errorf("%s: error %q does not say the server is unreachable", name, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: took %s", name, d)
		}
	}
}

// TestCacheAndRequests: a second verification of the same repository asks
// only for the timestamp; the rest comes from the in-memory cache.
func TestCacheAndRequests(t *testing.T) {
	w := newWorld(t)
	img := imagetest.PushImageConfig(t, w.reg+"/app:v1")
	repo := w.srv.NewRepo(t, w.reg+"/app", notarytest.ECDSA)
	repo.Sign("v1", img.Digest)
	v, with := newValidator(t, w.srv.URL, "", key{"default", repo.RootKeyPEM()})
	var n atomic.Int64
	var paths []string
	rt := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		n.Add(1)
		paths = append(paths, r.URL.Path)
		return http.DefaultTransport.RoundTrip(r)
	})
	nv := newVerifier(t, v, Options{Transport: rt})
	wantAllowed(t, check(t, nv, w.subject("app", img), with))
	first := n.Swap(0)
	wantAllowed(t, check(t, nv, w.subject("app", img), with))
	second := n.Load()
	t.Logf("requests: first %d, second %d: %v", first, second, paths)
	if first < 4 || second != 1 {
		t.Errorf("requests: first %d (want >= 4: root, timestamp, snapshot, targets), second %d (want 1: timestamp)", first, second)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
