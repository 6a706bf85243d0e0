package faults

import (
	"os"
	"testing"
	"time"

	"github.com/nri-image-verifier/nri-image-verifier/internal/attacktest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/faulttest"
)

// TestHostileRegistryMemory: the real daemon, 16 attacker images retried
// in loops against the memory attack, stays under 160 MiB of resident
// memory (the chart's limit is 256 Mi) and refuses every create.
// NIV_MEMATTACK_MAIN=1 also runs the daemon with main's limits (4 MiB
// caps, no budget, no list limit), for the record: about 400 MiB.
func TestHostileRegistryMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the daemon under a memory attack for seconds")
	}
	run := func(t *testing.T, sigCap, manifestCap int, args ...string) faulttest.Usage {
		w := attacktest.Start(t, attacktest.Options{Attackers: 16, Rules: attacktest.HostileLists(sigCap, manifestCap),
			Args: append([]string{"--registry-timeout", "2s", "--verify-timeout", "10s", "--cache-error-ttl", "200ms"}, args...)})
		base := faulttest.MeasurePID(w.Daemon.PID())
		stop := w.Attack()
		time.Sleep(8 * time.Second)
		res := stop()
		u := faulttest.MeasurePID(w.Daemon.PID())
		t.Logf("baseline %s; under attack %s; %d creates, %d allowed, %d hostile answers; refusals: %q",
			base, u, res.Creates, res.Allowed, w.Proxy.Faulted(), res.Reasons[:min(3, len(res.Reasons))])
		if w.Proxy.Faulted() == 0 {
			t.Error("the attack was never served")
		}
		if res.Allowed != 0 {
			t.Errorf("%d of %d attacker creates allowed", res.Allowed, res.Creates)
		}
		if w.Daemon.Exited() {
			t.Fatalf("the daemon died under the attack:\n%s", w.Daemon.Tail(40))
		}
		// And it still serves everyone else: a signed image from a good
		// registry is verified and allowed after the attack.
		if err := w.Settle(w.Fresh); err != nil {
			t.Errorf("a signed image after the attack: %v", err)
		}
		// Once the verifications under way have given up, no body holds
		// any of the budget.
		if !attacktest.WaitFor(30*time.Second, func() bool { return w.Metric("nri_image_verifier_registry_body_bytes_in_use") == 0 }) {
			t.Errorf("body budget still in use after the attack: %v bytes", w.Metric("nri_image_verifier_registry_body_bytes_in_use"))
		}
		t.Logf("budget %v bytes, %v reads refused for want of it", w.Metric("nri_image_verifier_registry_body_budget_bytes"),
			w.Metric("nri_image_verifier_registry_body_budget_refused_total"))
		return u
	}
	// The attack as the review made it, sized to main's 4 MiB caps (main
	// reaches about 400 MiB here), and sized to the caps now in force.
	for _, size := range []struct {
		name                string
		sigCap, manifestCap int
	}{{"main's caps", 4 << 20, 4 << 20}, {"current caps", 256 << 10, 1 << 20}} {
		t.Run(size.name, func(t *testing.T) {
			if u := run(t, size.sigCap, size.manifestCap); u.PeakRSS > 160<<20 {
				t.Errorf("peak RSS %d MiB under the memory attack, want at most 160 MiB", u.PeakRSS>>20)
			}
		})
	}
	if os.Getenv("NIV_MEMATTACK_MAIN") != "" {
		old := run(t, 4<<20, 4<<20, "--registry-max-manifest-bytes=4Mi", "--registry-max-signature-bytes=4Mi",
			"--registry-body-budget=16Gi", "--registry-max-descriptors=1048576")
		t.Logf("main's limits: peak RSS %d MiB", old.PeakRSS>>20)
	}
}
