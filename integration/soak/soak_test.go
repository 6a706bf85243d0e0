// Package soak runs many container decisions through the real plugin, gate,
// cosign validator and registry client, over NRI's runtime side, while the
// policy is reloaded (valid and invalid versions), the registry flaps and
// the runtime restarts. It checks every decision against an oracle and that
// goroutines, file descriptors and memory stay steady.
//
// The short form (10,000 decisions) runs with `go test`; run it longer with
//
//	go test -tags nri_no_wasm -timeout 30m -run TestSoak ./integration/soak/ -soak.duration=10m
//
// or NIV_SOAK_DURATION=10m. go test's -timeout (default 10m) must leave
// room for the duration plus setup and settling (endMargin): the test
// refuses to start a run that cannot fit, and stops early, failing, rather
// than let the timeout panic.
package soak

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/nri-image-verifier/nri-image-verifier/gate"
	"github.com/nri-image-verifier/nri-image-verifier/internal/faulttest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/nritest"
	"github.com/nri-image-verifier/nri-image-verifier/plugin"
	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/nri-image-verifier/nri-image-verifier/verify"
	"github.com/nri-image-verifier/nri-image-verifier/verify/registry"
	"github.com/nri-image-verifier/nri-image-verifier/verify/validators"
)

var (
	decisions = flag.Int("soak.decisions", 10000, "decisions to make at least")
	duration  = flag.Duration("soak.duration", 0, "keep going until this much time has passed (default: until -soak.decisions)")
)

// The rhythm of the run, in decisions.
const (
	batch          = 50   // decisions between events, made by workers at once
	workers        = 4    // concurrent creates (NRI serialises them; the plugin and gate see concurrency)
	reloadEvery    = 300  // a policy reload, valid or not
	flapEvery      = 1000 // the registry goes down ...
	flapFor        = 100  // ... for this many decisions (half refused, half 503)
	reconnectEvery = 2500 // the runtime restarts: the plugin reconnects
	sampleEvery    = 1000 // a usage sample for the report
)

// Roots and the policies the run cycles through.
type variant struct {
	name      string
	trustRoot string // with.trustRoot
	threshold int    // 0: not set
	selected  []string
	need      int
}

var variants = []variant{
	{"alice", "alice", 0, []string{"alice"}, 1},
	{"bob", "bob", 0, []string{"bob"}, 1},
	{"any", "*", 1, []string{"alice", "bob"}, 1},
	{"both", "*", 0, []string{"alice", "bob"}, 2},
}

// subject is one image of the run and who signed it how.
type subject struct {
	name    string
	img     nritest.Image
	signers []string // roots whose valid signatures it carries
	blocked bool     // matched by the static deny rule
}

func (s subject) allowedUnder(v variant) bool {
	if s.blocked {
		return false
	}
	n := 0
	for _, sel := range v.selected {
		for _, sg := range s.signers {
			if sel == sg {
				n++
			}
		}
	}
	return n >= v.need
}

type soak struct {
	t          *testing.T
	upstream   string
	proxy      *faulttest.Proxy
	alice, bob string // PEM
	policyFile string
	subjects   []subject

	gate      *gate.Gate
	transport *http.Transport
	rt        *nritest.Runtime

	loaded            chan string // version of each policy put in force
	failed            chan error  // each rejected reload
	inForce           variant
	reloads, rejected int
}

func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("soak: skipped with -short")
	}
	if d := os.Getenv("NIV_SOAK_DURATION"); d != "" && *duration == 0 {
		v, err := time.ParseDuration(d)
		if err != nil {
			t.Fatalf("NIV_SOAK_DURATION: %v", err)
		}
		*duration = v
	}
	deadline, hasDeadline := t.Deadline()
	if left := time.Until(deadline); hasDeadline && *duration+endMargin > left {
		t.Fatalf("-soak.duration=%v does not fit in go test's -timeout (%v left; the run needs its duration plus about %v): "+
			"pass -timeout %v or more", *duration, left.Round(time.Second), endMargin, (*duration + 2*endMargin).Round(time.Minute))
	}
	nritest.Logs(os.Stderr, slog.LevelWarn)
	s := setup(t)

	// Warm up, then take the baseline with idle connections closed (the
	// end is measured the same way).
	for _, sub := range s.subjects {
		s.decideOne(sub, &tally{})
	}
	baseline := s.quiet()
	t.Logf("baseline: %s", baseline)

	var tl tally
	start := time.Now()
	samples := []string{fmt.Sprintf("%6d %s", 0, baseline)}
	rng := rand.New(rand.NewPCG(1, 2))
	down := false
	for n := 0; n < *decisions || time.Since(start) < *duration; n += batch {
		if hasDeadline && time.Until(deadline) < endMargin {
			t.Errorf("stopped after %d decisions: go test's -timeout ends in %v, and settling and the report need about %v; "+
				"pass a larger -timeout", n, time.Until(deadline).Round(time.Second), endMargin)
			break
		}
		// Events between batches, when no request is in flight.
		switch {
		case n > 0 && n%reconnectEvery == 0:
			s.reconnect()
			tl.reconnects++
		case n > 0 && n%reloadEvery == 0:
			s.reload(rng, n)
		}
		switch {
		case n%flapEvery == flapFor/2 && !down:
			s.proxy.Down() // connection refused
			down = true
			tl.flaps++
		case n%flapEvery == flapFor && down:
			if err := s.proxy.Up(); err != nil {
				t.Fatal(err)
			}
			down = false
			// ... then 503 for a while.
			s.proxy.Set(faulttest.Rule{Kinds: []faulttest.Kind{faulttest.KindManifest, faulttest.KindTag, faulttest.KindBlob, faulttest.KindReferrers},
				Fault: faulttest.Status(http.StatusServiceUnavailable, "")})
		case n%flapEvery == flapFor+flapFor/2:
			s.proxy.Clear()
		}

		s.runBatch(rng, &tl)
		if (n+batch)%sampleEvery == 0 {
			samples = append(samples, fmt.Sprintf("%6d %s", n+batch, faulttest.Measure()))
		}
		if t.Failed() {
			break
		}
	}
	if down {
		if err := s.proxy.Up(); err != nil {
			t.Fatal(err)
		}
	}
	s.proxy.Clear()
	elapsed := time.Since(start)

	after := s.settle(baseline, 5)
	t.Logf("%d decisions in %v (%.0f/s): %d allowed, %d denied (%d of them signed images refused as transient: registry down or pending), %d policy reloads (%d rejected), %d registry flaps, %d runtime restarts",
		tl.total.Load(), elapsed.Round(time.Millisecond), float64(tl.total.Load())/elapsed.Seconds(),
		tl.allowed.Load(), tl.denied.Load(), tl.transient.Load(), s.reloads, s.rejected, tl.flaps, tl.reconnects)
	t.Logf("usage (decisions, then the numbers):\n%s", strings.Join(samples, "\n"))
	t.Logf("before: %s", baseline)
	t.Logf("after:  %s", after)
	calls, failedHooks, slowest := s.rt.Hooks()
	t.Logf("NRI: %d hook calls, %d failed (refusals), slowest %v", calls, failedHooks, slowest)

	if n := tl.wrongAllow.Load(); n != 0 {
		t.Errorf("%d wrong allows: %s", n, tl.firstWrong())
	}
	if n := tl.wrongDeny.Load(); n != 0 {
		t.Errorf("%d definitive denies of images the policy admits: %s", n, tl.firstWrong())
	}
	if tl.total.Load() < int64(*decisions) {
		t.Errorf("only %d decisions", tl.total.Load())
	}
	if slowest > decisionTimeout+600*time.Millisecond {
		t.Errorf("slowest hook %v, over the %v decision timeout", slowest, decisionTimeout)
	}
	if after.HeapInuse > baseline.HeapInuse+32<<20 {
		t.Errorf("heap grew from %.1f to %.1f MiB", float64(baseline.HeapInuse)/(1<<20), float64(after.HeapInuse)/(1<<20))
	}
}

const (
	decisionTimeout = time.Second
	registryTimeout = 500 * time.Millisecond
	// endMargin is what a run needs besides its decisions: setup, the
	// last policy reload and runtime restart, settling (up to 20 s) and
	// the report, with room for a loaded machine.
	endMargin = time.Minute
)

func setup(t *testing.T) *soak {
	s := &soak{t: t, upstream: imagetest.StartRegistry(t), loaded: make(chan string, 1), failed: make(chan error, 1)}
	alice := imagetest.NewSigner(t, imagetest.ECDSAP256)
	bob := imagetest.NewSigner(t, imagetest.Ed25519)
	mallory := imagetest.NewSigner(t, imagetest.ECDSAP256)
	s.alice, s.bob = alice.PublicKeyPEM(), bob.PublicKeyPEM()

	p, err := faulttest.Start(s.upstream)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	s.proxy = p

	u := s.upstream
	add := func(repo string, signers []string, sign func(repo string, img imagetest.Image)) {
		img := imagetest.PushImageConfig(t, u+"/"+repo+":v1")
		if sign != nil {
			sign(u+"/"+repo, img)
		}
		s.subjects = append(s.subjects, subject{name: repo, signers: signers, blocked: strings.HasPrefix(repo, "blocked/"),
			img: nritest.Image{Name: p.Addr() + "/" + repo + ":v1", Digest: img.Digest, ConfigDigest: img.ConfigDigest}})
	}
	legacy := func(k *imagetest.Signer) func(string, imagetest.Image) {
		return func(repo string, img imagetest.Image) {
			imagetest.SignLegacy(t, repo, img.Digest, k, imagetest.SignOptions{})
		}
	}
	bundle := func(k *imagetest.Signer) func(string, imagetest.Image) {
		return func(repo string, img imagetest.Image) {
			imagetest.SignBundle(t, repo, img.Digest, k, imagetest.SignOptions{})
		}
	}
	for i := 0; i < 3; i++ {
		add(fmt.Sprintf("alice/legacy%d", i), []string{"alice"}, legacy(alice))
		add(fmt.Sprintf("alice/bundle%d", i), []string{"alice"}, bundle(alice))
		add(fmt.Sprintf("bob/bundle%d", i), []string{"bob"}, bundle(bob))
		add(fmt.Sprintf("unsigned/app%d", i), nil, nil)
	}
	add("bob/legacy", []string{"bob"}, legacy(bob))
	add("both/app", []string{"alice", "bob"}, func(repo string, img imagetest.Image) {
		legacy(alice)(repo, img)
		bundle(bob)(repo, img)
	})
	add("mallory/app", nil, legacy(mallory))
	add("tampered/app", nil, func(repo string, img imagetest.Image) {
		imagetest.SignLegacy(t, repo, img.Digest, alice, imagetest.SignOptions{Tamper: true})
	})
	add("blocked/app", []string{"alice"}, legacy(alice))
	// alice's signature of another image, copied next to this one.
	other := imagetest.PushImageConfig(t, u+"/replay/app:v0")
	imagetest.SignLegacy(t, u+"/replay/app", other.Digest, alice, imagetest.SignOptions{})
	add("replay/app", nil, func(repo string, img imagetest.Image) {
		imagetest.CopySignatures(t, repo, other.Digest, img.Digest)
	})
	// A multi-arch index signed on the index.
	idx := imagetest.PushIndex(t, u+"/alice/multi:v1")
	imagetest.SignLegacy(t, u+"/alice/multi", idx.Digest, alice, imagetest.SignOptions{})
	s.subjects = append(s.subjects, subject{name: "alice/multi", signers: []string{"alice"},
		img: nritest.Image{Name: p.Addr() + "/alice/multi:v1", Digest: idx.Digest, ConfigDigest: idx.Platforms[0].ConfigDigest}})

	// The policy file, watched as the daemon watches it.
	s.policyFile = filepath.Join(t.TempDir(), "policy.yaml")
	s.inForce = variants[0]
	writeFile(t, s.policyFile, s.policyText(variants[0], 0))
	first, err := policy.Load(s.policyFile)
	if err != nil {
		t.Fatal(err)
	}

	s.transport = &http.Transport{
		DialContext:         faulttest.LoopbackOnlyDialer(&net.Dialer{Timeout: 5 * time.Second}),
		MaxIdleConns:        100,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     90 * time.Second,
	}
	reg, err := registry.New(registry.Options{Timeout: registryTimeout, Transport: s.transport, Keychain: authn.NewMultiKeychain()})
	if err != nil {
		t.Fatal(err)
	}
	cache := verify.NewCache(verify.CacheOptions{VerifyTimeout: 5 * time.Second, ErrorTTL: 2 * time.Second, NegativeTTL: 2 * time.Second})
	g, err := gate.New(first, validators.Builder(reg), cache)
	if err != nil {
		t.Fatal(err)
	}
	s.gate = g

	ctx, cancel := context.WithCancel(context.Background())
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		_ = policy.Watch(ctx, s.policyFile, validators.Check,
			func(p *policy.Policy) {
				if p.Version == g.Policy().Version {
					return
				}
				if err := g.SetPolicy(p); err != nil {
					s.failed <- err
					return
				}
				s.loaded <- p.Version
			},
			func(err error) { s.failed <- err })
	}()

	rt, err := nritest.New(nritest.Options{Required: []string{plugin.DefaultName}, Severable: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Start(); err != nil {
		t.Fatal(err)
	}
	s.rt = rt
	pl, err := plugin.New(plugin.Config{Socket: rt.Socket, Timeout: decisionTimeout,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, g, nopReporter{})
	if err != nil {
		t.Fatal(err)
	}
	runDone := make(chan error, 1)
	go func() { runDone <- pl.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		rt.Close()
		<-runDone
		<-watchDone
	})
	if err := rt.WaitPlugin(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *soak) policyText(v variant, n int) string {
	threshold := ""
	if v.threshold > 0 {
		threshold = fmt.Sprintf(", threshold: %d", v.threshold)
	}
	return fmt.Sprintf(`# %s, reload %d
validators:
- name: default
  type: cosign
  trustRoots:
  - name: alice
    key: |
      %s
  - name: bob
    key: |
      %s
- name: deny
  type: static
  approve: false
policy:
- pattern: "%[5]s/*"
  with: {trustRoot: %q%s}
- pattern: "%[5]s/blocked/*"
  validator: deny
`, v.name, n, indent(s.alice), indent(s.bob), s.proxy.Addr(), v.trustRoot, threshold)
}

func indent(pem string) string {
	return strings.ReplaceAll(strings.TrimSpace(pem), "\n", "\n      ")
}

// invalid policies a reload may bring: the last good one must stay.
func (s *soak) invalidText(rng *rand.Rand, n int) string {
	good := s.policyText(variants[rng.IntN(len(variants))], n)
	switch rng.IntN(4) {
	case 0:
		return good + "bogus: field\n"
	case 1:
		return strings.Replace(good, "-----BEGIN PUBLIC KEY-----", "-----BEGIN PRIVATE KEY-----", 1)
	case 2:
		return good + "policy: [\n"
	default:
		return strings.Replace(good, "validator: deny", "validator: nosuch", 1)
	}
}

// reload writes a new policy file, valid two times in three, and waits
// until the watch has put it in force or rejected it.
func (s *soak) reload(rng *rand.Rand, n int) {
	s.t.Helper()
	s.reloads++
	if rng.IntN(3) == 0 {
		writeFile(s.t, s.policyFile, s.invalidText(rng, n))
		select {
		case <-s.failed:
			s.rejected++
		case v := <-s.loaded:
			s.t.Fatalf("an invalid policy was put in force (version %s)", v)
		case <-time.After(10 * time.Second):
			s.t.Fatal("invalid policy neither loaded nor rejected")
		}
		return
	}
	v := variants[rng.IntN(len(variants))]
	writeFile(s.t, s.policyFile, s.policyText(v, n))
	select {
	case <-s.loaded:
		s.inForce = v
	case err := <-s.failed:
		s.t.Fatalf("valid policy %s rejected: %v", v.name, err)
	case <-time.After(10 * time.Second):
		s.t.Fatal("valid policy not loaded")
	}
}

// reconnect restarts the runtime side; the plugin reconnects.
func (s *soak) reconnect() {
	s.t.Helper()
	s.rt.Stop()
	if err := s.rt.Start(); err != nil {
		s.t.Fatal(err)
	}
	if err := s.rt.WaitPlugin(15 * time.Second); err != nil {
		s.t.Fatal(err)
	}
}

// tally counts decisions and what the oracle thought of them.
type tally struct {
	total, allowed, denied, transient atomic.Int64
	wrongAllow, wrongDeny             atomic.Int64
	flaps, reconnects                 int

	mu    sync.Mutex
	wrong string
}

func (tl *tally) noteWrong(format string, args ...any) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if tl.wrong == "" {
		tl.wrong = fmt.Sprintf(format, args...)
	}
}

func (tl *tally) firstWrong() string {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return tl.wrong
}

func (s *soak) runBatch(rng *rand.Rand, tl *tally) {
	picks := make(chan subject, batch)
	for i := 0; i < batch; i++ {
		picks <- s.subjects[rng.IntN(len(s.subjects))]
	}
	close(picks)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for sub := range picks {
				s.decideOne(sub, tl)
			}
		}()
	}
	wg.Wait()
}

// decideOne creates one container and checks the runtime's answer against
// the policy in force: an allow must be right; a deny of an image the
// policy admits must say it could not verify now (registry trouble, or
// still running), never that the image is not signed.
func (s *soak) decideOne(sub subject, tl *tally) {
	_, err := s.rt.Create("soak", sub.img)
	tl.total.Add(1)
	want := sub.allowedUnder(s.inForce)
	if err == nil {
		tl.allowed.Add(1)
		if !want {
			tl.wrongAllow.Add(1)
			tl.noteWrong("%s allowed under policy %q", sub.name, s.inForce.name)
		}
		return
	}
	tl.denied.Add(1)
	if !want {
		return
	}
	msg := err.Error()
	if strings.Contains(msg, "verification failed") || strings.Contains(msg, "verification still running") ||
		strings.Contains(msg, "no decision within") {
		tl.transient.Add(1)
		return
	}
	tl.wrongDeny.Add(1)
	tl.noteWrong("%s denied under policy %q: %v", sub.name, s.inForce.name, err)
}

// quiet closes idle connections, lets their goroutines end, and measures.
func (s *soak) quiet() faulttest.Usage {
	for i := 0; i < 3; i++ {
		s.transport.CloseIdleConnections()
		s.proxy.CloseIdleConnections()
		time.Sleep(100 * time.Millisecond)
	}
	return faulttest.Measure()
}

// settle waits until goroutines and fds are back near baseline.
func (s *soak) settle(baseline faulttest.Usage, slack int) faulttest.Usage {
	s.t.Helper()
	u, err := faulttest.Settle(baseline, slack, 20*time.Second, func() {
		s.transport.CloseIdleConnections()
		s.proxy.CloseIdleConnections()
	})
	if err != nil {
		s.t.Error(err)
	}
	return u
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

type nopReporter struct{}

func (nopReporter) Report(gate.Input, gate.Decision) {}
