package faults

import (
	"strings"
	"testing"
	"time"

	"github.com/nri-image-verifier/nri-image-verifier/internal/attacktest"
)

// TestTarpitDoesNotStallOtherTenants is issue 14's tarpit: a tenant's
// registry never answers, and 8 of its images are retried in loops. The
// runtime serialises NRI calls, so on old main each attacker create held
// the lock for the whole decision timeout and another tenant's create of a
// statically allowed image took seconds. Now an overdue verification, and
// a registry or namespace with one, answer at once: the victim's creates
// never wait out an attacker's deadline, and every attacker create is
// refused. (The latency figures are the benchmark's, bench section 7.)
func TestTarpitDoesNotStallOtherTenants(t *testing.T) {
	w := attacktest.Start(t, attacktest.Options{})
	if err := w.Settle(w.Signed); err != nil {
		t.Fatalf("victim's signed image before the attack: %v", err)
	}
	stop := w.Attack()
	defer stop()
	// The first attacker create waits out its deadline; then the
	// registry's and the namespace's breakers are open.
	if !attacktest.WaitFor(30*time.Second, func() bool { return w.Metric("nri_image_verifier_pending_shed_total") >= 8 }) {
		t.Fatalf("no waits shed after 30 s; daemon log:\n%s", w.Daemon.Tail(40))
	}
	static, err := w.Victim(w.Static, 5)
	if err != nil {
		t.Fatal(err)
	}
	cached, err := w.Victim(w.Signed, 5)
	if err != nil {
		t.Fatal(err)
	}
	res := stop()
	t.Logf("victim static p50 %v max %v; cached p50 %v max %v; attacker %d creates",
		attacktest.Median(static), attacktest.Max(static), attacktest.Median(cached), attacktest.Max(cached), res.Creates)
	// The bound is the attacker's deadline: a victim create that reached it
	// waited behind an attacker create that was not shed.
	for name, ds := range map[string][]time.Duration{"static": static, "cached": cached} {
		if m := attacktest.Max(ds); m >= attacktest.DecisionTimeout {
			t.Errorf("a victim create of the %s image took %v: it waited out an attacker's %v deadline", name, m, attacktest.DecisionTimeout)
		}
	}
	if res.Allowed != 0 {
		t.Errorf("%d of %d attacker creates allowed", res.Allowed, res.Creates)
	}
	if res.Creates < 8*5 {
		t.Errorf("only %d attacker creates while the victim was measured: the attacker's loops were stalled", res.Creates)
	}
	for _, r := range res.Reasons {
		if !strings.Contains(r, "verification still running") {
			t.Errorf("attacker refused for another reason than pending: %s", r)
		}
	}
	if w.Daemon.Exited() {
		t.Fatalf("the daemon exited:\n%s", w.Daemon.Tail(40))
	}
}
