package bench

import (
	"fmt"
	"testing"
	"time"

	"github.com/nri-image-verifier/nri-image-verifier/internal/attacktest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/faulttest"
)

// attackResult is one attack of section 7: a victim tenant's creates while
// another tenant's registry attacks the node's gate, beside the same creates
// idle, and the daemon's memory.
type attackResult struct {
	name                   string
	n, attackers           int
	idleStatic, idleCached []time.Duration
	static, cached         []time.Duration
	attacker               attacktest.AttackResult
	rssIdle, peakRSS       uint64
	signedAfter            error
}

// benchAttack times n victim creates of each image, idle and then while the
// attacker's images are retried in loops (warm says when the attack is in
// full swing), and measures the daemon's peak resident set.
func benchAttack(t *testing.T, name string, n int, o attacktest.Options, warm func(w *attacktest.World) bool) attackResult {
	w := attacktest.Start(t, o)
	res := attackResult{name: name, n: n, attackers: len(w.Evil)}
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
	if !warm(w) {
		t.Fatalf("%s: the attack never got going", name)
	}
	if res.static, err = w.Victim(w.Static, n); err != nil {
		t.Fatal(err)
	}
	if res.cached, err = w.Victim(w.Signed, n); err != nil {
		t.Fatal(err)
	}
	res.attacker = stop()
	res.peakRSS = faulttest.MeasurePID(w.Daemon.PID()).PeakRSS
	// A signed image never seen before: verified after the attack, not
	// answered from the cache.
	res.signedAfter = w.Settle(w.Fresh)
	return res
}

// benchAttacks are the two attacks of issue 14: a tarpit (8 images of a
// registry that never answers) and the memory attack (16 images whose
// signature manifests and referrer lists fill the caps and whose blobs
// stall after sending all but one byte).
func benchAttacks(t *testing.T, n int, memFor time.Duration) []attackResult {
	shed := func(w *attacktest.World) bool {
		return attacktest.WaitFor(30*time.Second, func() bool { return w.Metric("nri_image_verifier_pending_shed_total") >= 8 })
	}
	soak := func(w *attacktest.World) bool {
		time.Sleep(memFor)
		return w.Proxy.Faulted() > 0
	}
	return []attackResult{
		benchAttack(t, "tarpit registry, 8 images", n, attacktest.Options{}, shed),
		benchAttack(t, "memory attack, 16 images", n, attacktest.Options{Attackers: 16, Rules: attacktest.HostileLists(256<<10, 1<<20),
			Args: []string{"--registry-timeout", "2s", "--verify-timeout", "10s", "--cache-error-ttl", "200ms"}}, soak),
	}
}

func reportAttacks(t *testing.T, r *reportText, as []attackResult) {
	r.printf("## 7. Under attack: a tenant's hostile registry\n\n")
	r.printf("The daemon binary behind an in-process NRI runtime (which serialises every call, as containerd does). " +
		"A tenant's registry (a fault proxy in front of a real one) attacks: a *tarpit* accepts every request and never answers; " +
		"the *memory attack* serves signature manifests and referrer lists at the size caps, each naming 32 entries, and blobs " +
		"and manifests that send all but one byte of the cap and stall. The attacker's images are created in loops, each retried " +
		"every 50 ms (kubelet retries far more slowly). Another tenant creates containers of a statically allowed image and of a " +
		"signed image whose verdict is cached, 100 ms apart, before and during the attack. Time from the runtime's CreateContainer " +
		"call to its answer; resident set from /proc.\n\n")
	row := func(a attackResult, what string, idle, under []time.Duration) []string {
		return []string{a.name, what, ms(attacktest.Median(idle)), ms(attacktest.Max(idle)), ms(attacktest.Median(under)), ms(attacktest.Max(under))}
	}
	var rows, mem [][]string
	for _, a := range as {
		rows = append(rows, row(a, fmt.Sprintf("static image (%d)", a.n), a.idleStatic, a.static), row(a, fmt.Sprintf("cached image (%d)", a.n), a.idleCached, a.cached))
		after := "allowed"
		if a.signedAfter != nil {
			after = "REFUSED: " + a.signedAfter.Error()
		}
		mem = append(mem, []string{a.name, mib(int64(a.rssIdle)), mib(int64(a.peakRSS)),
			fmt.Sprintf("%d creates, %d allowed", a.attacker.Creates, a.attacker.Allowed), after})
	}
	r.printf("%s\n", table([]string{"attack", "victim's create", "idle p50", "idle max", "**under attack p50**", "**under attack max**"}, rows))
	r.printf("%s\n", table([]string{"attack", "resident set idle", "**peak resident set**", "attacker", "signed image after"}, mem))
	for _, a := range as {
		worst := max(attacktest.Max(a.static), attacktest.Max(a.cached))
		p50 := max(attacktest.Median(a.static), attacktest.Median(a.cached))
		ok := worst <= 100*time.Millisecond && a.attacker.Allowed == 0 && a.signedAfter == nil
		r.target(fmt.Sprintf("7. %s: victim's static and cached creates p50 and max ≤ 100 ms, every attacker create refused", a.name),
			fmt.Sprintf("p50 %s, max %s (idle p50 %s); %d attacker creates, %d allowed", ms(p50), ms(worst),
				ms(max(attacktest.Median(a.idleStatic), attacktest.Median(a.idleCached))), a.attacker.Creates, a.attacker.Allowed), ok)
		r.target(fmt.Sprintf("7. %s: daemon peak resident set ≤ 160 MiB, signed image allowed after", a.name),
			fmt.Sprintf("%s (idle %s)", mib(int64(a.peakRSS)), mib(int64(a.rssIdle))), a.peakRSS <= 160<<20 && a.signedAfter == nil)
	}
	r.printf("\n")
}
