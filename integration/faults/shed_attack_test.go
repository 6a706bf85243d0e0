package faults

import (
	"crypto/sha256"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nri-image-verifier/nri-image-verifier/internal/attacktest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/faulttest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/nritest"
)

// Attacks on the verification load shedding (verify/flight.go) by a tenant
// who can create pods in one namespace and runs a tarpit registry. Each
// test stages the real daemon behind NRI's runtime side, with a short
// --verify-timeout so that the state the attack leaves can be timed (the
// default is 30 s: every window below is then 30 s, renewed by the
// attacker at will).

const shedVerifyTimeout = 8 * time.Second

// fillAttackerNamespace makes the attacker's 4 tarpit verifications run
// (the per-group limit) and its namespace tripped.
func fillAttackerNamespace(t *testing.T, w *attacktest.World) {
	t.Helper()
	for _, img := range w.Evil {
		d, err := w.RT.Create(attacktest.AttackerNS, img)
		if err == nil || !strings.Contains(err.Error(), "verification still running") {
			t.Fatalf("attacker's tarpit image %s: %v", img.Name, err)
		}
		t.Logf("attacker create of %s answered pending in %v", img.Name, d.Round(time.Millisecond))
	}
}

// TestShedFrontRunSharedImage: the verdict cache's key names no namespace,
// and a flight counts against the groups of the create that started it. An
// attacker whose namespace's 4 slots are held by tarpit verifications
// creates a container of the victim's image (any image the node holds, or
// any public image: a digest is not a secret) first. The flight waits for a
// slot of the attacker's namespace, the attacker's create makes it overdue,
// and every victim create of that image joins the overdue flight and is
// answered pending at once, until the attacker's tarpit verifications time
// out; then the queued flight fails ("not started within") and that error
// is the victim's answer for --cache-error-ttl. The victim's own namespace
// and the registry had free slots all along.
//
// Safe behaviour (asserted): the victim's signed image is allowed within a
// few decision timeouts of its first create.
func TestShedFrontRunSharedImage(t *testing.T) {
	w := attacktest.Start(t, attacktest.Options{Attackers: 4,
		Args: []string{"--verify-timeout", shedVerifyTimeout.String()}})
	fillAttackerNamespace(t, w)
	// The attacker keeps its namespace's slots taken: new tarpit digests,
	// queued before the victim's flight, take each slot a tarpit
	// verification frees (waiters are woken in the order they queued), and
	// the attacker's create of the victim's image follows each, so that
	// when the queued flight fails its retry is the attacker's again.
	stop := renewTarpits(t, w, 200*time.Millisecond, w.Signed)
	defer stop()
	time.Sleep(time.Second) // the loop's first front-run is in

	start := time.Now()
	var reasons []string
	var last string
	allowed := time.Duration(-1)
	for time.Since(start) < 3*shedVerifyTimeout {
		_, err := w.RT.Create(attacktest.VictimNS, w.Signed)
		if err == nil {
			allowed = time.Since(start)
			break
		}
		r := err.Error()
		if i := strings.Index(r, "verification"); i >= 0 {
			r = r[i:]
		}
		r = r[:min(160, len(r))]
		if r != last {
			last = r
			reasons = append(reasons, fmt.Sprintf("+%v %s", time.Since(start).Round(100*time.Millisecond), r))
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, r := range reasons {
		t.Logf("victim refused: %s", r)
	}
	t.Logf("victim allowed after %v (-1: never)", allowed)
	if bound := 3 * attacktest.DecisionTimeout; allowed < 0 || allowed > bound {
		t.Errorf("HOLE: the victim's signed image was refused for %v (bound %v): the attacker's namespace holds the victim's verification", time.Since(start).Round(time.Millisecond), bound)
	}
}

// TestShedTripSharedRegistry: the attacker's create of any image on a
// registry host the victim also uses (a public registry, a shared company
// registry) queues behind the attacker's full namespace, goes overdue and
// trips that host for every tenant: each new digest from it is answered
// pending at once, without waiting, until the attacker's flight ends. The
// victim's verification does run in the background and its retry finds the
// verdict, so this costs the victim one kubelet retry per new image; the
// test asserts that the verdict does come (safe) and logs the shed.
func TestShedTripSharedRegistry(t *testing.T) {
	w := attacktest.Start(t, attacktest.Options{Attackers: 4,
		Args: []string{"--verify-timeout", shedVerifyTimeout.String()}})
	good, _, _ := strings.Cut(w.Signed.Name, "/")
	mine := imagetest.PushImageConfig(t, good+"/tenant/a:v1")
	other := imagetest.PushImageConfig(t, good+"/other/b:v1")
	fillAttackerNamespace(t, w)
	if _, err := w.RT.Create(attacktest.AttackerNS, nritest.Image{Name: good + "/tenant/a:v1", Digest: mine.Digest, ConfigDigest: mine.ConfigDigest}); err == nil {
		t.Fatal("attacker's unsigned image allowed")
	}
	victim := nritest.Image{Name: good + "/other/b:v1", Digest: other.Digest, ConfigDigest: other.ConfigDigest}
	d, err := w.RT.Create(attacktest.VictimNS, victim)
	t.Logf("victim's first create of a new (unsigned) image on the shared host: %v in %v", err, d.Round(time.Millisecond))
	shed := err != nil && strings.Contains(err.Error(), "verification still running") && d < attacktest.DecisionTimeout/2
	if shed {
		t.Logf("SHED: the attacker's queued flight tripped the shared registry host for the victim")
	}
	if err := w.Settle(victim); err == nil || !strings.Contains(err.Error(), "no ") && !strings.Contains(err.Error(), "signature") {
		t.Errorf("victim's unsigned image: want a signature refusal once verified, got %v", err)
	} else {
		t.Logf("victim's verdict on retry: %v", err)
	}
}

// TestShedMaxFlightsOneNamespace: the per-group limit bounds running
// verifications only; flights waiting for a slot are bounded by the node's
// --max-verifications-in-flight (1024) alone. One namespace creating
// containers of 1024 distinct tarpit digests (shed at once, so this takes
// seconds) fills it, and every other tenant's create that needs a
// verification is refused with ErrBusy until those flights time out
// (--verify-timeout, 30 s by default), renewed by the attacker's retries.
//
// Safe behaviour (asserted): a victim's new signed image is verified and
// allowed while the attacker does this.
func TestShedMaxFlightsOneNamespace(t *testing.T) {
	w := attacktest.Start(t, attacktest.Options{Attackers: 4,
		Args: []string{"--verify-timeout", shedVerifyTimeout.String()}})
	fillAttackerNamespace(t, w)
	host, _, _ := strings.Cut(w.Evil[0].Name, "/")
	start := time.Now()
	busy := 0
	for i := range 1024 {
		dg := fmt.Sprintf("sha256:%x", sha256.Sum256(fmt.Appendf(nil, "m%d", i)))
		cg := fmt.Sprintf("sha256:%x", sha256.Sum256(fmt.Appendf(nil, "c%d", i)))
		_, err := w.RT.Create(attacktest.AttackerNS, nritest.Image{Name: fmt.Sprintf("%s/evil/many%d:v1", host, i), Digest: dg, ConfigDigest: cg})
		if err != nil && strings.Contains(err.Error(), "too many verifications") {
			busy++
		}
	}
	t.Logf("attacker: 1024 creates in one namespace in %v (%d busy)", time.Since(start).Round(time.Millisecond), busy)

	vs := time.Now()
	d, err := w.RT.Create(attacktest.VictimNS, w.Signed)
	t.Logf("victim's first create of its new signed image: %v in %v", err, d.Round(time.Millisecond))
	var allowed time.Duration = -1
	for time.Since(vs) < shedVerifyTimeout+3*time.Second {
		if _, err = w.RT.Create(attacktest.VictimNS, w.Signed); err == nil {
			allowed = time.Since(vs)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("victim allowed after %v (-1: never); last refusal %v", allowed, err)
	if bound := 3 * attacktest.DecisionTimeout; allowed < 0 || allowed > bound {
		t.Errorf("HOLE: one namespace's flights kept the victim's signed image refused for %v (bound %v)", time.Since(vs).Round(time.Millisecond), bound)
	}
}

// renewTarpits creates a container of a new tarpit digest in the
// attacker's namespace every interval, as an attacker's pods would, until
// stop is called.
func renewTarpits(t *testing.T, w *attacktest.World, interval time.Duration, frontRun ...nritest.Image) (stop func()) {
	host, _, _ := strings.Cut(w.Evil[0].Name, "/")
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			dg := fmt.Sprintf("sha256:%x", sha256.Sum256(fmt.Appendf(nil, "renew-m%d", i)))
			cg := fmt.Sprintf("sha256:%x", sha256.Sum256(fmt.Appendf(nil, "renew-c%d", i)))
			_, _ = w.RT.Create(attacktest.AttackerNS, nritest.Image{Name: fmt.Sprintf("%s/evil/renew%d:v1", host, i), Digest: dg, ConfigDigest: cg})
			for _, img := range frontRun {
				_, _ = w.RT.Create(attacktest.AttackerNS, img)
			}
			select {
			case <-quit:
				return
			case <-time.After(interval):
			}
		}
	}()
	return func() { close(quit); <-done }
}

// TestShedJustUnderDeadline: a registry that answers each verification
// just under the decision timeout is never overdue, so no breaker trips,
// and the runtime's NRI lock is held for that long by each create of a new
// attacker digest (or of an old one whose error verdict expired: errors are
// cached --cache-error-ttl, 5 s). A few attacker creates a second keep the
// lock busy, and the victim's creates, even of a statically allowed image
// that needs no verification, queue behind them.
//
// Safe behaviour (asserted): the victim's static creates stay under the
// decision timeout.
func TestShedJustUnderDeadline(t *testing.T) {
	under := attacktest.DecisionTimeout - 300*time.Millisecond
	w := attacktest.Start(t, attacktest.Options{Attackers: 4,
		Rules: []faulttest.Rule{{Kinds: []faulttest.Kind{faulttest.KindManifest}, Fault: faulttest.SlowHeaders(under)}}})
	host, _, _ := strings.Cut(w.Evil[0].Name, "/")
	var (
		quit = make(chan struct{})
		wg   sync.WaitGroup
		mu   sync.Mutex
		lat  []time.Duration
		seq  atomic.Int64
	)
	for range 4 {
		wg.Go(func() {
			for {
				i := seq.Add(1)
				dg := fmt.Sprintf("sha256:%x", sha256.Sum256(fmt.Appendf(nil, "under-m%d", i)))
				cg := fmt.Sprintf("sha256:%x", sha256.Sum256(fmt.Appendf(nil, "under-c%d", i)))
				d, err := w.RT.Create(attacktest.AttackerNS, nritest.Image{Name: fmt.Sprintf("%s/evil/under%d:v1", host, i), Digest: dg, ConfigDigest: cg})
				if err == nil {
					t.Errorf("attacker's unsigned image allowed")
				}
				mu.Lock()
				lat = append(lat, d)
				if len(lat) == 1 {
					t.Logf("attacker's first create: %v: %v", d.Round(time.Millisecond), err)
				}
				mu.Unlock()
				select {
				case <-quit:
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
		})
	}
	time.Sleep(3 * time.Second)
	static, verr := w.Victim(w.Static, 5)
	close(quit)
	wg.Wait()
	mu.Lock()
	t.Logf("attacker: %d creates, p50 %v (each held the NRI lock; none shed: shed total %v)", len(lat), attacktest.Median(lat), w.Metric("nri_image_verifier_pending_shed_total"))
	mu.Unlock()
	if verr != nil {
		t.Fatal(verr)
	}
	t.Logf("victim static creates: p50 %v max %v", attacktest.Median(static), attacktest.Max(static))
	if m := attacktest.Max(static); m >= attacktest.DecisionTimeout {
		t.Errorf("HOLE: a victim create of a statically allowed image took %v behind attacker creates answered just under the %v deadline", m, attacktest.DecisionTimeout)
	}
}
