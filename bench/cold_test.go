package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/nri-image-verifier/nri-image-verifier/verify"
	"github.com/nri-image-verifier/nri-image-verifier/verify/cosign"
	"github.com/nri-image-verifier/nri-image-verifier/verify/registry"
)

// coldWorld is a loopback registry with signed images of every kind, each
// verified only once per verifier, and the daemon's registry client.
type coldWorld struct {
	host   string
	signer *imagetest.Signer
	tr     *tracer
	reg    *registry.Client
	v      *cosign.Verifier
	// The same with the node's content store (--prewarm): the chain check
	// reads the manifests containerd pulled.
	content *memContent
	trLocal *tracer
	vLocal  *cosign.Verifier

	proxy   *delayProxy        // in front of the registry; the delayed images are pushed through it
	warm    map[string]image   // per repository: verified first, to warm it and the connections
	first   map[string]image   // per kind: alone in a repository of its own
	imgs    map[string][]image // the measured ones
	delayed map[string][]image // the measured ones behind the delaying proxy
}

func newColdWorld(t *testing.T, n, nDelayed int) *coldWorld {
	t.Helper()
	start := time.Now()
	w := &coldWorld{
		host:    startRegistryProcess(t),
		signer:  imagetest.NewSigner(t, imagetest.ECDSAP256),
		tr:      newTracer(),
		warm:    map[string]image{},
		first:   map[string]image{},
		imgs:    map[string][]image{},
		delayed: map[string][]image{},
	}
	// Repositories of at most perRepo measured images: go-containerregistry's
	// in-memory registry lists referrers by reading every manifest of the
	// repository (a real registry keeps an index), which would otherwise
	// add a cost that grows with the run to every bundle lookup, ours and
	// cosign's alike.
	push := func(host, path, k string) image {
		repo := host + "/" + path
		if _, ok := w.warm[repo]; !ok {
			w.warm[repo] = pushSigned(t, host, path, k, w.signer)
		}
		return pushSigned(t, host, path, k, w.signer)
	}
	// The delayed images are pushed (and signed) under the proxy's address,
	// the name they are then verified under, as a registry's images are.
	w.proxy = startDelayProxy(t, w.host, 0)
	pushed := 0
	for _, k := range kinds {
		w.first[k] = pushSigned(t, w.host, "cold/"+k+"-first", k, w.signer)
		for i := range n {
			w.imgs[k] = append(w.imgs[k], push(w.host, fmt.Sprintf("cold/%s-%d", k, i/perRepo), k))
		}
		for range nDelayed {
			w.delayed[k] = append(w.delayed[k], push(w.proxy.addr(), "cold/"+k+"-delayed", k))
		}
		pushed += 1 + n + nDelayed
	}
	pushed += len(w.warm)
	w.reg = newRegistryClient(t, w.tr)
	w.v = newVerifier(t, w.host, w.signer, w.reg)
	w.content = &memContent{m: map[string][]byte{}}
	plain := newRegistryClient(t, newTracer())
	for _, imgs := range [][]image{w.imgs["legacy"], w.imgs["bundle"], w.imgs["index"], w.delayed["legacy"], w.delayed["bundle"], w.delayed["index"]} {
		for _, img := range imgs {
			w.content.pulled(t, plain, img)
		}
	}
	for _, img := range w.warm {
		w.content.pulled(t, plain, img)
	}
	w.trLocal = newTracer()
	regLocal, err := registry.New(registry.Options{Transport: w.trLocal, Keychain: emptyKeychain{}, Local: w.content})
	if err != nil {
		t.Fatal(err)
	}
	w.vLocal = newVerifier(t, w.host, w.signer, regLocal)
	t.Logf("registry %s: %d signed images pushed in %v", w.host, pushed, time.Since(start).Round(time.Millisecond))
	return w
}

// memContent stands in for containerd's content store in the loopback
// benchmark: it holds what a pull of an image leaves there, the manifest
// (or index and this platform's manifest).
type memContent struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (c *memContent) Content(_ context.Context, digest string) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if b, ok := c.m[digest]; ok {
		return b, nil
	}
	return nil, errors.New("not in the content store")
}

func (c *memContent) pulled(t testing.TB, reg *registry.Client, img image) {
	t.Helper()
	repo, err := name.NewRepository(img.repo)
	if err != nil {
		t.Fatal(err)
	}
	m, err := reg.Manifest(context.Background(), repo.Digest(img.digest))
	if err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[img.digest] = m.Raw
	if img.child != "" {
		cm, err := reg.Manifest(context.Background(), repo.Digest(img.child))
		if err != nil {
			t.Fatal(err)
		}
		c.m[img.child] = cm.Raw
	}
}

// perRepo is how many measured images a repository holds.
const perRepo = 10

// warmRepo verifies the repository's warm-up image with ours and, if
// given, cosign's shared-transport peer, once per repository.
func (w *coldWorld) warmRepo(t *testing.T, v *cosign.Verifier, tr *tracer, repo string, rename func(string) string, shared *peer, done map[string]bool) {
	if done[repo] {
		return
	}
	done[repo] = true
	img := w.warm[repo]
	verifyOurs(t, v, tr, subject(rename(img.repo), img, true))
	if shared != nil {
		if _, err := shared.verify(rename(img.repo)+"@"+img.digest, img.cosignFormat()); err != nil {
			t.Fatalf("cosign warm-up: %v", err)
		}
	}
}

func same(s string) string { return s }

func newVerifier(t testing.TB, host string, s *imagetest.Signer, reg *registry.Client) *cosign.Verifier {
	t.Helper()
	pol := policyFor(t, host, s)
	v, err := cosign.New(&pol.Validators[0], reg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// oneVerification is one measured verification.
type oneVerification struct {
	took     time.Duration
	requests int
	depth    int
	spans    []span
}

// verifyOurs runs the daemon's cosign validator on s once.
func verifyOurs(t testing.TB, v *cosign.Verifier, tr *tracer, s verify.Subject) oneVerification {
	t.Helper()
	tr.take()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	verdict, err := v.Verify(ctx, s, policy.With{})
	took := time.Since(start)
	spans := tr.take()
	if err != nil || !verdict.Allowed {
		t.Fatalf("verify %s@%s: verdict %+v, error %v", s.Repository, s.Digest, verdict, err)
	}
	if os.Getenv("NIV_BENCH_DEBUG") != "" {
		t.Logf("%s@%s (config %v): %d requests\n%s", s.Repository, s.Digest, s.ConfigDigest != "", len(spans), describeSpans(spans))
	}
	return oneVerification{took: took, requests: len(spans), depth: depth(spans), spans: spans}
}

func subject(repo string, img image, withConfig bool) verify.Subject {
	s := verify.Subject{Repository: repo, Digest: img.digest}
	if withConfig {
		s.ConfigDigest = img.config
	}
	return s
}

// series is one verifier's measurements of one kind.
type series struct {
	took     durations
	requests ints
	depth    ints
}

func (s *series) add(o oneVerification) {
	s.took = append(s.took, o.took)
	s.requests = append(s.requests, o.requests)
	s.depth = append(s.depth, o.depth)
}

func (s *series) addPeer(r peerResult) {
	s.took = append(s.took, time.Duration(r.NS))
	s.requests = append(s.requests, r.Requests)
	s.depth = append(s.depth, r.Depth)
}

type coldResult struct {
	kind           string
	ours, oursNoCf series
	oursLocal      series // chain from the node's content store
	cosign         series // shared transport
	cosignFresh    series // a new transport per call
	example        []span // one of ours, for the report
	firstInRepo    oneVerification
}

// benchCold verifies every measured image once with each verifier, in
// turns whose order alternates, so drift and the registry's warmth hit all
// alike.
func benchCold(t *testing.T, w *coldWorld, shared, fresh *peer) []coldResult {
	var out []coldResult
	warmed, warmedLocal := map[string]bool{}, map[string]bool{}
	for _, k := range kinds {
		r := coldResult{kind: k}
		// A repository the client has not used yet: the first digest pays
		// go-containerregistry's per-repository handshake (ping).
		r.firstInRepo = verifyOurs(t, w.v, w.tr, subject(w.first[k].repo, w.first[k], true))
		for i, img := range w.imgs[k] {
			w.warmRepo(t, w.v, w.tr, img.repo, same, shared, warmed)
			if !warmedLocal[img.repo] {
				warmedLocal[img.repo] = true
				verifyOurs(t, w.vLocal, w.trLocal, subject(img.repo, w.warm[img.repo], true))
			}
			steps := []func(){
				func() { r.ours.add(verifyOurs(t, w.v, w.tr, subject(img.repo, img, true))) },
				func() { r.oursNoCf.add(verifyOurs(t, w.v, w.tr, subject(img.repo, img, false))) },
				func() { r.oursLocal.add(verifyOurs(t, w.vLocal, w.trLocal, subject(img.repo, img, true))) },
			}
			if shared != nil {
				steps = append(steps, func() {
					res, err := shared.verify(img.ref(), img.cosignFormat())
					if err != nil {
						t.Fatalf("cosign %s: %v", img.ref(), err)
					}
					r.cosign.addPeer(res)
				}, func() {
					res, err := fresh.verify(img.ref(), img.cosignFormat())
					if err != nil {
						t.Fatalf("cosign (fresh transport) %s: %v", img.ref(), err)
					}
					r.cosignFresh.addPeer(res)
				})
			}
			for j := range steps {
				steps[(i+j)%len(steps)]()
			}
		}
		// An example trace: one more fresh digest of the kind.
		if len(w.delayed[k]) > 0 {
			img := w.delayed[k][0]
			w.warmRepo(t, w.v, w.tr, img.repo, same, nil, warmed)
			r.example = verifyOurs(t, w.v, w.tr, subject(img.repo, img, true)).spans
		}
		out = append(out, r)
	}
	return out
}

type delayedResult struct {
	kind      string
	rtt       time.Duration
	ours      series
	oursLocal series
	cosign    series
}

// benchDelayed is benchCold behind the proxy, which now adds rtt to every
// round trip, with registry clients of their own (whose connections go
// through the proxy).
func benchDelayed(t *testing.T, w *coldWorld, rtt time.Duration, shared *peer) []delayedResult {
	w.proxy.setRTT(rtt)
	defer w.proxy.setRTT(0)
	tr, trLocal := newTracer(), newTracer()
	v := newVerifier(t, w.host, w.signer, newRegistryClient(t, tr))
	regLocal, err := registry.New(registry.Options{Transport: trLocal, Keychain: emptyKeychain{}, Local: w.content})
	if err != nil {
		t.Fatal(err)
	}
	vLocal := newVerifier(t, w.host, w.signer, regLocal)
	var out []delayedResult
	warmed, warmedLocal := map[string]bool{}, map[string]bool{}
	for _, k := range kinds {
		r := delayedResult{kind: k, rtt: rtt}
		for i, img := range w.delayed[k] {
			w.warmRepo(t, v, tr, img.repo, same, shared, warmed)
			w.warmRepo(t, vLocal, trLocal, img.repo, same, nil, warmedLocal)
			steps := []func(){
				func() { r.ours.add(verifyOurs(t, v, tr, subject(img.repo, img, true))) },
				func() { r.oursLocal.add(verifyOurs(t, vLocal, trLocal, subject(img.repo, img, true))) },
			}
			if shared != nil {
				steps = append(steps, func() {
					res, err := shared.verify(img.ref(), img.cosignFormat())
					if err != nil {
						t.Fatalf("cosign via proxy: %v", err)
					}
					r.cosign.addPeer(res)
				})
			}
			for j := range steps {
				steps[(i+j)%len(steps)]()
			}
		}
		out = append(out, r)
	}
	return out
}

func describeSpans(spans []span) string {
	spans = slices.Clone(spans)
	slices.SortFunc(spans, func(a, b span) int { return a.start.Compare(b.start) })
	t0 := spans[0].start
	var b strings.Builder
	for _, s := range spans {
		conn := ""
		if s.newConn {
			conn = " (new connection)"
		}
		fmt.Fprintf(&b, "    %7.0f–%7.0f µs  %s %s%s\n", float64(s.start.Sub(t0))/1e3, float64(s.end.Sub(t0))/1e3, s.method, s.path, conn)
	}
	return b.String()
}
