// Package faults tests how the gate decides when the registry is hostile
// or broken: container creations through NRI's runtime side
// (internal/nritest) into the real plugin, gate, cosign validator and
// registry client, and the real binary, with internal/faulttest's proxy
// between them and a real registry (internal/imagetest).
package faults

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/adaptation"
	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/nri-image-verifier/nri-image-verifier/gate"
	"github.com/nri-image-verifier/nri-image-verifier/internal/daemontest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/faulttest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/nritest"
	"github.com/nri-image-verifier/nri-image-verifier/plugin"
	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/nri-image-verifier/nri-image-verifier/verify"
	"github.com/nri-image-verifier/nri-image-verifier/verify/registry"
	"github.com/nri-image-verifier/nri-image-verifier/verify/validators"
)

// Budgets of the in-process world, shaped like a node's (decision timeout
// below the runtime's request timeout, request timeout below the decision
// timeout) but shorter, so that every fault plays out in a second or two.
const (
	decisionTimeout = 1 * time.Second        // plugin.Config.Timeout (--decision-timeout)
	requestTimeout  = 2 * time.Second        // containerd's plugin_request_timeout
	registryTimeout = 300 * time.Millisecond // one registry request (--registry-timeout)
	verifyTimeout   = 4 * time.Second        // one background verification (--verify-timeout)
	errorTTL        = 300 * time.Millisecond // how long a transient failure is cached (--cache-error-ttl)
	// hookSlack is what the NRI round trip, and a loaded CI machine, may
	// add to the plugin's own budget; the hook must still answer well
	// before requestTimeout.
	hookSlack = 600 * time.Millisecond
	// heapBound is how much more heap a fault may cost while the registry
	// sends a gigabyte: a few capped bodies, never the gigabyte.
	heapBound = 64 << 20
)

// world is one signed, one bundle-signed and one unsigned image in a real
// registry, a fault proxy in front of it, and the real plugin, gate, cosign
// validator and registry client deciding through the runtime side of NRI.
type world struct {
	t        *testing.T
	upstream string
	proxy    *faulttest.Proxy
	alice    *imagetest.Signer

	legacy, bundle, unsigned imagetest.Image

	rt       *nritest.Runtime
	gate     *gate.Gate
	client   *http.Transport
	policy   string
	versions atomic.Int64
}

func TestMain(m *testing.M) {
	nritest.Logs(os.Stderr, slog.LevelWarn)
	adaptation.SetPluginRequestTimeout(requestTimeout)
	code := m.Run()
	daemontest.Cleanup()
	os.Exit(code)
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{t: t, upstream: imagetest.StartRegistry(t), alice: imagetest.NewSigner(t, imagetest.ECDSAP256)}
	u := w.upstream
	w.legacy = imagetest.PushImageConfig(t, u+"/app/legacy:v1")
	imagetest.SignLegacy(t, u+"/app/legacy", w.legacy.Digest, w.alice, imagetest.SignOptions{})
	w.bundle = imagetest.PushImageConfig(t, u+"/app/bundle:v1")
	imagetest.SignBundle(t, u+"/app/bundle", w.bundle.Digest, w.alice, imagetest.SignOptions{})
	w.unsigned = imagetest.PushImageConfig(t, u+"/app/unsigned:v1")

	p, err := faulttest.Start(u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	w.proxy = p

	w.policy = fmt.Sprintf(`
validators:
- name: default
  type: cosign
  trustRoots:
  - name: alice
    key: |
      %s
policy:
- pattern: "%s/*"
  with: {trustRoot: alice}
`, strings.ReplaceAll(strings.TrimSpace(w.alice.PublicKeyPEM()), "\n", "\n      "), p.Addr())

	// The verifier's transport: Go's defaults, no proxy from the
	// environment, and a guard that refuses to dial off loopback, so that
	// a redirect to another host is never followed off this machine.
	w.client = &http.Transport{
		DialContext:         faulttest.LoopbackOnlyDialer(&net.Dialer{Timeout: 5 * time.Second}),
		MaxIdleConns:        100,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     90 * time.Second,
	}
	reg, err := registry.New(registry.Options{
		Timeout:   registryTimeout,
		Transport: w.client,
		// Credentials for the proxy's host only: a redirect must not
		// carry them to another host.
		Keychain: hostKeychain{host: p.Addr(), user: "node", pass: "secret"},
	})
	if err != nil {
		t.Fatal(err)
	}
	cache := verify.NewCache(verify.CacheOptions{VerifyTimeout: verifyTimeout, ErrorTTL: errorTTL})
	g, err := gate.New(w.parsePolicy(), validators.Builder(reg), cache)
	if err != nil {
		t.Fatal(err)
	}
	w.gate = g

	rt, err := nritest.New(nritest.Options{Required: []string{plugin.DefaultName}, Severable: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rt.Close)
	if err := rt.Start(); err != nil {
		t.Fatal(err)
	}
	w.rt = rt
	pl, err := plugin.New(plugin.Config{Socket: rt.Socket, Timeout: decisionTimeout, Logger: discardLogger()}, g, nopReporter{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- pl.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		rt.Stop()
		<-done
	})
	if err := rt.WaitPlugin(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	return w
}

// parsePolicy returns the policy with a fresh version, so that each case
// starts with an empty verdict cache (versions key the cache).
func (w *world) parsePolicy() *policy.Policy {
	w.t.Helper()
	pol, err := policy.Parse([]byte(fmt.Sprintf("%s# version %d\n", w.policy, w.versions.Add(1))))
	if err != nil {
		w.t.Fatal(err)
	}
	return pol
}

func (w *world) image(repo string, img imagetest.Image) nritest.Image {
	return nritest.Image{Name: w.proxy.Addr() + "/" + repo + ":v1", Digest: img.Digest, ConfigDigest: img.ConfigDigest}
}

// create asks the runtime to create a container until the answer is not a
// pending deny (kubelet retries a failed create on later pod syncs), and
// checks that each answer came within the hook's deadline.
func (w *world) create(img nritest.Image) error {
	w.t.Helper()
	for i := 0; ; i++ {
		w.rt.ResetHooks()
		took, err := w.rt.Create("faults", img)
		if _, _, slowest := w.rt.Hooks(); slowest > decisionTimeout+hookSlack {
			w.t.Errorf("an NRI hook took %v, over the %v decision timeout (+%v)", slowest, decisionTimeout, hookSlack)
		}
		if took > requestTimeout {
			w.t.Errorf("the runtime answered in %v, over its %v request timeout", took, requestTimeout)
		}
		if err == nil || !strings.Contains(err.Error(), "verification still running") {
			return err
		}
		if i == 20 {
			w.t.Fatalf("still pending after %d attempts: %v", i+1, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// settle waits for background verifications and connections to wind down
// and checks that goroutines and file descriptors are back to baseline.
func (w *world) settle(baseline faulttest.Usage) faulttest.Usage {
	w.t.Helper()
	u, err := faulttest.Settle(baseline, 2, 15*time.Second, func() {
		w.client.CloseIdleConnections()
		w.proxy.CloseIdleConnections()
	})
	if err != nil {
		w.t.Error(err)
	}
	return u
}

// heapPeak samples the heap until stop is called and returns the peak.
func heapPeak() (stop func() uint64) {
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 {
		close(done)
		wg.Wait()
		return peak.Load()
	}
}

type faultCase struct {
	name  string
	image func(w *world) nritest.Image
	rules func(w *world) []faulttest.Rule
	// down: the registry refuses connections for this case.
	down  bool
	allow bool
	// reason: substrings the refusal must carry (any one of each group).
	reason [][]string
	// thenAllow: the fault was transient; once its error has expired
	// from the cache, the next attempt must be allowed.
	thenAllow bool
	// maxLen bounds the refusal's length.
	maxLen int
}

func legacyImage(w *world) nritest.Image   { return w.image("app/legacy", w.legacy) }
func bundleImage(w *world) nritest.Image   { return w.image("app/bundle", w.bundle) }
func unsignedImage(w *world) nritest.Image { return w.image("app/unsigned", w.unsigned) }

func rules(r ...faulttest.Rule) func(*world) []faulttest.Rule {
	return func(*world) []faulttest.Rule { return r }
}

const ociManifest = "application/vnd.oci.image.manifest.v1+json"

func faultCases() []faultCase {
	manifests := []faulttest.Kind{faulttest.KindManifest, faulttest.KindTag}
	return []faultCase{
		{name: "baseline/signed legacy allowed", image: legacyImage, rules: rules(), allow: true},
		{name: "baseline/signed bundle allowed", image: bundleImage, rules: rules(), allow: true},
		{name: "baseline/unsigned denied", image: unsignedImage, rules: rules(),
			reason: [][]string{{"no cosign signature found"}}},

		{name: "connection refused", image: legacyImage, rules: rules(), down: true,
			reason: [][]string{{"verification failed"}, {"connection refused"}}},

		{name: "reset mid-body, always", image: legacyImage,
			rules:  rules(faulttest.Rule{Kinds: manifests, Fault: faulttest.ResetMidBody()}),
			reason: [][]string{{"verification failed"}, {"connection reset", "unexpected EOF"}}},
		// go-containerregistry retries a failed round trip, not a failed
		// body read: the verification fails, its error is cached only for
		// the error TTL, and the next attempt is allowed.
		{name: "reset mid-body, once (recovered on retry)", image: legacyImage,
			rules:  rules(faulttest.Rule{Kinds: []faulttest.Kind{faulttest.KindSigTag}, Fault: faulttest.ResetMidBody(), Times: 1}),
			reason: [][]string{{"verification failed"}, {"connection reset"}}, thenAllow: true},

		{name: "slow headers", image: legacyImage,
			rules:  rules(faulttest.Rule{Kinds: manifests, Fault: faulttest.SlowHeaders(time.Minute)}),
			reason: [][]string{{"verification failed"}, {"no response within the 300ms request timeout"}}},
		{name: "slow body", image: legacyImage,
			rules:  rules(faulttest.Rule{Kinds: manifests, Fault: faulttest.SlowBody(50 * time.Millisecond)}),
			reason: [][]string{{"verification failed"}, {"body not read within the 300ms request timeout"}}},

		{name: "huge signature manifest with Content-Length", image: legacyImage,
			rules:  rules(faulttest.Rule{Kinds: []faulttest.Kind{faulttest.KindSigTag}, Fault: faulttest.Huge(1<<30, true, ociManifest)}),
			reason: [][]string{{"verification failed"}, {"exceeds the signature manifest size cap of 262144 bytes"}}},
		{name: "huge image manifest, chunked", image: legacyImage,
			rules:  rules(faulttest.Rule{Kinds: []faulttest.Kind{faulttest.KindManifest}, Fault: faulttest.Huge(1<<30, false, ociManifest)}),
			reason: [][]string{{"verification failed"}, {"exceeds the manifest size cap of 1048576 bytes"}}},
		{name: "huge blob, chunked", image: legacyImage,
			rules:  rules(faulttest.Rule{Kinds: []faulttest.Kind{faulttest.KindBlob}, Fault: faulttest.Huge(1<<30, false, "application/octet-stream")}),
			reason: [][]string{{"verification failed"}, {"exceeds the signature blob size cap of 262144 bytes"}}},
		{name: "huge referrers list", image: bundleImage,
			rules:  rules(faulttest.Rule{Kinds: []faulttest.Kind{faulttest.KindReferrers}, Fault: faulttest.Huge(1<<30, false, "application/vnd.oci.image.index.v1+json")}),
			reason: [][]string{{"verification failed"}, {"exceeds the referrer list size cap of 262144 bytes"}}},

		{name: "invalid JSON signature manifest", image: legacyImage,
			rules:  rules(faulttest.Rule{Kinds: []faulttest.Kind{faulttest.KindSigTag}, Fault: faulttest.Body(ociManifest, []byte(`{"schemaVersion":2,"layers":[{"mediaType":`))}),
			reason: [][]string{{"not a valid manifest"}}},
		{name: "invalid JSON referrers list, unsigned", image: unsignedImage,
			rules:  rules(faulttest.Rule{Kinds: []faulttest.Kind{faulttest.KindReferrers}, Fault: faulttest.Body("application/vnd.oci.image.index.v1+json", []byte(`{"manifests":[{`))}),
			reason: [][]string{{"verification failed"}, {"referrers"}}},
		// The legacy signature alone meets the policy: the broken list
		// costs nothing.
		{name: "invalid JSON referrers list, legacy-signed", image: legacyImage,
			rules: rules(faulttest.Rule{Kinds: []faulttest.Kind{faulttest.KindReferrers}, Fault: faulttest.Body("application/vnd.oci.image.index.v1+json", []byte(`{"manifests":[{`))}),
			allow: true},
		{name: "invalid JSON bundle", image: bundleImage,
			rules:  rules(faulttest.Rule{Kinds: []faulttest.Kind{faulttest.KindBlob}, Fault: faulttest.Rewrite(func(_ http.Header, b []byte) []byte { return []byte("{not json") })}),
			reason: [][]string{{"verification failed"}, {"does not match", "error verifying sha256 checksum"}}},

		// The Content-Type header is the registry's claim; the content is
		// pinned by digest or authenticated by the signature.
		{name: "wrong Content-Type on every manifest", image: legacyImage,
			rules: rules(faulttest.Rule{Kinds: manifests, Fault: faulttest.Rewrite(func(h http.Header, b []byte) []byte {
				h.Set("Content-Type", "text/html; charset=utf-8")
				return b
			})}), allow: true},
		{name: "wrong Content-Type, an index for a manifest", image: bundleImage,
			rules: rules(faulttest.Rule{Kinds: manifests, Fault: faulttest.Rewrite(func(h http.Header, b []byte) []byte {
				h.Set("Content-Type", "application/vnd.oci.image.index.v1+json")
				return b
			})}), allow: true},
		{name: "signature layers of another media type", image: legacyImage,
			rules: rules(faulttest.Rule{Kinds: []faulttest.Kind{faulttest.KindSigTag}, Fault: faulttest.Rewrite(func(_ http.Header, b []byte) []byte {
				return bytes.ReplaceAll(b, []byte(imagetest.SimpleSigningMediaType), []byte("application/octet-stream"))
			})}),
			reason: [][]string{{"no cosign signature found"}}},

		{name: "manifest content does not match its digest", image: legacyImage,
			rules: rules(faulttest.Rule{Kinds: []faulttest.Kind{faulttest.KindManifest}, Fault: faulttest.Rewrite(func(_ http.Header, b []byte) []byte {
				return append(b, ' ')
			})}),
			reason: [][]string{{"verification failed"}, {"does not match"}}},
		// go-containerregistry takes the digest of a signed schema 1
		// manifest from the Docker-Content-Digest header; the client's own
		// check must still catch the forgery.
		{name: "forged digest header on a schema 1 manifest", image: legacyImage,
			rules: rules(faulttest.Rule{Kinds: []faulttest.Kind{faulttest.KindManifest}, Fault: func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
				d := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
				w.Header().Set("Docker-Content-Digest", d)
				faulttest.Body("application/vnd.docker.distribution.manifest.v1+prettyjws",
					[]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"digest":"sha256:`+strings.Repeat("0", 64)+`"},"layers":[]}`))(w, r, nil)
			}}),
			reason: [][]string{{"verification failed"}, {"content does not match its digest"}}},
		{name: "signature payload does not match its digest", image: legacyImage,
			rules: rules(faulttest.Rule{Kinds: []faulttest.Kind{faulttest.KindBlob}, Fault: faulttest.Rewrite(func(_ http.Header, b []byte) []byte {
				return bytes.Replace(b, []byte("cosign"), []byte("COSIGN"), 1)
			})}),
			reason: [][]string{{"verification failed"}, {"does not match", "error verifying sha256 checksum"}}},

		{name: "redirect loop", image: legacyImage,
			rules: func(w *world) []faulttest.Rule {
				return []faulttest.Rule{{Kinds: []faulttest.Kind{faulttest.KindSigTag}, Fault: faulttest.Redirect("http://" + w.proxy.Addr())}}
			},
			reason: [][]string{{"verification failed"}, {"stopped after 10 redirects"}}},
		{name: "redirect to a private address", image: legacyImage,
			rules: func(w *world) []faulttest.Rule {
				_, port, _ := net.SplitHostPort(w.upstream)
				return []faulttest.Rule{{Kinds: []faulttest.Kind{faulttest.KindBlob}, Fault: faulttest.Redirect("http://127.0.0.2:" + port)}}
			},
			reason: [][]string{{"verification failed"}, {"127.0.0.2"}}},
		{name: "redirect to a host off this machine", image: legacyImage,
			rules:  rules(faulttest.Rule{Kinds: []faulttest.Kind{faulttest.KindBlob}, Fault: faulttest.Redirect("http://blobs.mirror.example")}),
			reason: [][]string{{"verification failed"}, {"blobs.mirror.example"}}},

		{name: "401 loop", image: legacyImage,
			rules:  rules(faulttest.Rule{Kinds: []faulttest.Kind{faulttest.KindPing, faulttest.KindManifest, faulttest.KindTag, faulttest.KindBlob, faulttest.KindReferrers}, Fault: faulttest.Unauthorized()}),
			reason: [][]string{{"verification failed"}, {"401", "UNAUTHORIZED"}}},
		{name: "429 with Retry-After, persistent", image: legacyImage,
			rules:  rules(faulttest.Rule{Kinds: manifests, Fault: faulttest.Status(http.StatusTooManyRequests, "3600")}),
			reason: [][]string{{"verification failed"}, {"HTTP 429 Too Many Requests"}}},
		{name: "429 with Retry-After, once (retried)", image: legacyImage,
			rules: rules(faulttest.Rule{Kinds: []faulttest.Kind{faulttest.KindSigTag}, Fault: faulttest.Status(http.StatusTooManyRequests, "1"), Times: 1}), allow: true},
		{name: "503, persistent", image: legacyImage,
			rules:  rules(faulttest.Rule{Kinds: manifests, Fault: faulttest.Status(http.StatusServiceUnavailable, "")}),
			reason: [][]string{{"verification failed"}, {"HTTP 503 Service Unavailable"}}},
		// The registry's own text is kept short: it ends up in every
		// refusal, Event and audit line.
		{name: "503 with a 60 KiB error body", image: legacyImage,
			rules: rules(faulttest.Rule{Kinds: manifests, Fault: func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintf(w, `{"errors":[{"code":"UNAVAILABLE","message":"%s"}]}`, strings.Repeat("spam ", 12<<10))
			}}),
			reason: [][]string{{"verification failed"}, {"HTTP 503 Service Unavailable"}, {"more bytes)"}}, maxLen: 2048},
		{name: "500 on the referrers API, unsigned", image: unsignedImage,
			rules:  rules(faulttest.Rule{Kinds: []faulttest.Kind{faulttest.KindReferrers}, Fault: faulttest.Status(http.StatusInternalServerError, "")}),
			reason: [][]string{{"verification failed"}, {"HTTP 500 Internal Server Error"}}},
		{name: "502, once (retried)", image: bundleImage,
			rules: rules(faulttest.Rule{Kinds: []faulttest.Kind{faulttest.KindBlob}, Fault: faulttest.Status(http.StatusBadGateway, ""), Times: 1}), allow: true},
	}
}

// TestFaults drives container creations through NRI's runtime side into the
// real plugin, gate, cosign validator and registry client, with the registry
// behind a proxy that injects one fault per case. Each case checks the
// decision (a deny naming the fault, or an allow where the fault is
// recoverable within the deadline), that every hook answered within its
// deadline, that the fault was actually hit, that memory stayed bounded,
// and that goroutines and file descriptors came back to baseline.
func TestFaults(t *testing.T) {
	w := newWorld(t)
	// Warm up (connections, ping, the plugin's first request), then take
	// the baseline.
	if err := w.create(legacyImage(w)); err != nil {
		t.Fatalf("warm-up: %v", err)
	}
	baseline := w.settle(faulttest.Measure())
	t.Logf("baseline: %s", baseline)

	for _, tc := range faultCases() {
		t.Run(tc.name, func(t *testing.T) {
			w.t = t
			defer func() { w.t = t }()
			if err := w.gate.SetPolicy(w.parsePolicy()); err != nil {
				t.Fatal(err)
			}
			w.proxy.ResetCounters()
			w.proxy.Set(tc.rules(w)...)
			if tc.down {
				w.proxy.Down()
			}
			before := faulttest.Measure()
			stop := heapPeak()

			err := w.create(tc.image(w))

			peak := stop()
			w.proxy.Clear()
			if tc.down {
				if err := w.proxy.Up(); err != nil {
					t.Fatal(err)
				}
			}
			if tc.allow != (err == nil) {
				t.Fatalf("allowed = %v, want %v; runtime error: %v", err == nil, tc.allow, err)
			}
			if err != nil {
				t.Logf("refusal: %v", err)
				for _, group := range tc.reason {
					if !containsAny(err.Error(), group) {
						t.Errorf("refusal does not name the fault (want one of %q)", group)
					}
				}
			}
			if len(tc.rules(w)) > 0 && w.proxy.Faulted() == 0 {
				t.Errorf("the fault was never hit (%d requests)", w.proxy.Requests())
			}
			if grew := int64(peak) - int64(before.HeapInuse); grew > heapBound {
				t.Errorf("heap grew by %d MiB during the fault, bound %d MiB", grew>>20, heapBound>>20)
			}
			if tc.maxLen > 0 && err != nil && len(err.Error()) > tc.maxLen {
				t.Errorf("refusal is %d bytes long, want at most %d", len(err.Error()), tc.maxLen)
			}
			if tc.thenAllow {
				time.Sleep(errorTTL)
				if err := w.create(tc.image(w)); err != nil {
					t.Errorf("after the fault cleared and its error expired: %v", err)
				}
			}
			after := w.settle(baseline)
			t.Logf("requests %d (faulted %d); heap peak +%.1f MiB; after: %s",
				w.proxy.Requests(), w.proxy.Faulted(), float64(int64(peak)-int64(before.HeapInuse))/(1<<20), after)
		})
	}
}

// TestRedirectToCDN: a registry that sends blob downloads to another host
// (a CDN) is followed, because what comes back is checked against the
// digest; the registry's credentials stay with the registry.
func TestRedirectToCDN(t *testing.T) {
	w := newWorld(t)
	cdn, err := faulttest.Start(w.upstream)
	if err != nil {
		t.Fatal(err)
	}
	defer cdn.Close()
	_, port, _ := net.SplitHostPort(cdn.Addr())
	// "localhost" is another host to the client than 127.0.0.1, and a
	// name, which go-containerregistry's SSRF check lets through.
	w.proxy.Set(faulttest.Rule{Kinds: []faulttest.Kind{faulttest.KindBlob}, Fault: faulttest.Redirect("http://localhost:" + port)})

	if err := w.create(legacyImage(w)); err != nil {
		t.Fatalf("signed image behind a CDN refused: %v", err)
	}
	if cdn.Requests() == 0 {
		t.Fatal("the CDN was never asked")
	}
	if !w.proxy.SawAuthorization(faulttest.KindSigTag) {
		t.Error("the registry never got the node's credentials (test broken?)")
	}
	if cdn.SawAuthorization(faulttest.KindBlob) {
		t.Error("the registry's credentials were sent to the CDN")
	}

	// A CDN serving other content is caught by the digest.
	if err := w.gate.SetPolicy(w.parsePolicy()); err != nil {
		t.Fatal(err)
	}
	cdn.Set(faulttest.Rule{Kinds: []faulttest.Kind{faulttest.KindBlob}, Fault: faulttest.Rewrite(func(_ http.Header, b []byte) []byte { return append(b, '\n') })})
	err = w.create(legacyImage(w))
	if err == nil || !containsAny(err.Error(), []string{"does not match", "error verifying sha256 checksum"}) {
		t.Fatalf("CDN serving other content: %v, want a deny naming the digest mismatch", err)
	}
	t.Logf("refusal: %v", err)
}

// TestConcurrentFaults: many containers of many images at once while the
// registry misbehaves in every way at random: no allow of an unsigned
// image, no hook over its deadline, nothing left running afterwards.
func TestConcurrentFaults(t *testing.T) {
	w := newWorld(t)
	if err := w.create(legacyImage(w)); err != nil {
		t.Fatalf("warm-up: %v", err)
	}
	baseline := w.settle(faulttest.Measure())

	all := []faulttest.Fault{faulttest.ResetMidBody(), faulttest.SlowHeaders(time.Second), faulttest.SlowBody(20 * time.Millisecond),
		faulttest.Huge(64<<20, false, ociManifest), faulttest.Status(http.StatusServiceUnavailable, ""), faulttest.Unauthorized(),
		faulttest.Status(http.StatusTooManyRequests, "2")}
	var n atomic.Int64
	pick := func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		// Every third request passes; the others get a fault in turn.
		i := n.Add(1)
		if i%3 == 0 {
			next.ServeHTTP(w, r)
			return
		}
		all[int(i)%len(all)](w, r, next)
	}
	w.proxy.Set(faulttest.Rule{Kinds: []faulttest.Kind{faulttest.KindManifest, faulttest.KindTag, faulttest.KindBlob, faulttest.KindReferrers}, Fault: pick})

	imgs := []struct {
		img    nritest.Image
		signed bool
	}{{legacyImage(w), true}, {bundleImage(w), true}, {unsignedImage(w), false}}
	var wg sync.WaitGroup
	var allowedUnsigned atomic.Int64
	w.rt.ResetHooks()
	for round := 0; round < 5; round++ {
		if err := w.gate.SetPolicy(w.parsePolicy()); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 12; i++ {
			im := imgs[i%len(imgs)]
			wg.Add(1)
			go func() {
				defer wg.Done()
				// took includes queueing behind the other creates: NRI
				// serialises requests, so only the hook's own time counts.
				_, err := w.rt.Create("faults", im.img)
				if err == nil && !im.signed {
					allowedUnsigned.Add(1)
				}
			}()
		}
		wg.Wait()
	}
	calls, _, slowest := w.rt.Hooks()
	if allowedUnsigned.Load() != 0 {
		t.Errorf("unsigned image allowed %d times", allowedUnsigned.Load())
	}
	if slowest > decisionTimeout+hookSlack {
		t.Errorf("slowest hook took %v, over the %v decision timeout (+%v)", slowest, decisionTimeout, hookSlack)
	}
	w.proxy.Clear()
	t.Logf("%d hooks, slowest %v; registry requests %d, faulted %d", calls, slowest, w.proxy.Requests(), w.proxy.Faulted())
	w.settle(baseline)
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// hostKeychain gives basic credentials for one registry host.
type hostKeychain struct{ host, user, pass string }

func (k hostKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	if r.RegistryStr() == k.host {
		return &authn.Basic{Username: k.user, Password: k.pass}, nil
	}
	return authn.Anonymous, nil
}

type nopReporter struct{}

func (nopReporter) Report(gate.Input, gate.Decision) {}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
