package bench

import (
	"fmt"
	"testing"
	"time"

	"github.com/nri-image-verifier/nri-image-verifier/internal/attacktest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/faulttest"
)

// attackResult is section 7: a victim tenant's creates while another
// tenant's registry attacks the node's gate, beside the same creates idle.
type attackResult struct {
	n, attackers              int
	idleStatic, idleCached    []time.Duration
	static, cached            []time.Duration
	attacker                  attacktest.AttackResult
	rssIdle, peakRSS, rssPost uint64
}

// benchTarpit times n victim creates of each image, idle and then while
// 8 attacker images of a registry that never answers are retried in loops.
func benchTarpit(t *testing.T, n int) attackResult {
	w := attacktest.Start(t, attacktest.Options{})
	res := attackResult{n: n, attackers: len(w.Evil)}
	if err := w.Settle(w.Signed); err != nil {
		t.Fatalf("victim's signed image: %v", err)
	}
	res.rssIdle = faulttest.MeasurePID(w.Daemon.PID()).RSS
	var err error
	if res.idleStatic, err = w.Victim(w.Static, n); err != nil {
		t.Fatal(err)
	}
	if res.idleCached, err = w.Victim(w.Signed, n); err != nil {
		t.Fatal(err)
	}
	stop := w.Attack()
	defer stop()
	if !attacktest.WaitFor(30*time.Second, func() bool { return w.Metric("nri_image_verifier_pending_shed_total") >= 8 }) {
		t.Fatal("no waits shed after 30 s")
	}
	if res.static, err = w.Victim(w.Static, n); err != nil {
		t.Fatal(err)
	}
	if res.cached, err = w.Victim(w.Signed, n); err != nil {
		t.Fatal(err)
	}
	res.attacker = stop()
	u := faulttest.MeasurePID(w.Daemon.PID())
	res.peakRSS, res.rssPost = u.PeakRSS, u.RSS
	return res
}

func reportTarpit(t *testing.T, r *reportText, a attackResult) {
	r.printf("## 7. Under attack: a tenant's tarpit registry\n\n")
	r.printf("The daemon binary behind an in-process NRI runtime (which serialises every call, as containerd does). "+
		"A tenant's registry (a fault proxy in front of a real one) accepts every request and never answers; %d of its images "+
		"are created in loops, each retried every 50 ms (kubelet retries far more slowly). Another tenant creates %d containers "+
		"of a statically allowed image and %d of a signed image whose verdict is cached, 100 ms apart, before and during the attack. "+
		"Time from the runtime's CreateContainer call to its answer.\n\n", a.attackers, a.n, a.n)
	row := func(name string, ds []time.Duration) []string {
		return []string{name, ms(attacktest.Median(ds)), ms(attacktest.Max(ds))}
	}
	r.printf("%s\n", table([]string{"victim's create", "p50", "max"}, [][]string{
		row("static image, idle", a.idleStatic), row("**static image, under attack**", a.static),
		row("cached image, idle", a.idleCached), row("**cached image, under attack**", a.cached),
	}))
	r.printf("Attacker: %d creates, %d allowed. Daemon resident set %s idle, %s after, peak %s.\n\n",
		a.attacker.Creates, a.attacker.Allowed, mib(int64(a.rssIdle)), mib(int64(a.rssPost)), mib(int64(a.peakRSS)))
	worst := max(attacktest.Max(a.static), attacktest.Max(a.cached))
	p50 := max(attacktest.Median(a.static), attacktest.Median(a.cached))
	ok := worst <= 100*time.Millisecond && a.attacker.Allowed == 0
	r.printf("Target: the victim's creates p50 and max ≤ 100 ms under attack, every attacker create refused: %s.\n\n", verdict(ok))
	r.target("7. tarpit registry, 8 images retried: victim's static and cached creates p50 and max ≤ 100 ms",
		fmt.Sprintf("p50 %s, max %s (idle p50 %s); %d attacker creates, %d allowed", ms(p50), ms(worst),
			ms(max(attacktest.Median(a.idleStatic), attacktest.Median(a.idleCached))), a.attacker.Creates, a.attacker.Allowed), ok)
}
