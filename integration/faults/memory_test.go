package faults

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nri-image-verifier/nri-image-verifier/internal/attacktest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/faulttest"
)

// hostileLists are issue #14's memory attack as fault proxy rules: a .sig
// manifest and a referrer list just under sigCap, each naming 32 entries;
// every payload blob sends sigCap-1 bytes and every manifest fetched by
// digest (the image's own, and the referrers') manifestCap-1, and then
// they stall until the daemon gives up.
func hostileLists(sigCap, manifestCap int) []faulttest.Rule {
	entries := func(mediaType, extra string) string {
		items := make([]string, 32)
		for i := range items {
			items[i] = fmt.Sprintf(`{"mediaType":%q,"digest":"sha256:%064x","size":1%s}`, mediaType, i+1, extra)
		}
		return strings.Join(items, ",")
	}
	pad := func(s string) []byte {
		return []byte(strings.Replace(s, "PAD", strings.Repeat("x", max(0, sigCap-512-len(s))), 1))
	}
	sig := pad(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",` +
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:` + strings.Repeat("0", 64) + `","size":2},` +
		`"layers":[` + entries("application/vnd.dev.cosign.simplesigning.v1+json", `,"annotations":{"dev.cosignproject.cosign/signature":"AAAA"}`) +
		`],"annotations":{"pad":"PAD"}}`)
	refs := pad(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[` +
		entries(ociManifest, `,"artifactType":"application/vnd.dev.sigstore.bundle.v0.3+json"`) + `],"annotations":{"pad":"PAD"}}`)
	return []faulttest.Rule{
		{Kinds: []faulttest.Kind{faulttest.KindSigTag}, Fault: faulttest.Body(ociManifest, sig)},
		{Kinds: []faulttest.Kind{faulttest.KindReferrers}, Fault: faulttest.Body("application/vnd.oci.image.index.v1+json", refs)},
		{Kinds: []faulttest.Kind{faulttest.KindBlob}, Fault: stallAfter(sigCap - 1)},
		{Kinds: []faulttest.Kind{faulttest.KindManifest}, Fault: stallAfter(manifestCap - 1)},
	}
}

var stallFiller = []byte(strings.Repeat(" ", 4<<20))

// stallAfter sends n bytes of a 200 answer and waits for the client to
// hang up.
func stallAfter(n int) faulttest.Fault {
	return func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(stallFiller[:n])
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		<-r.Context().Done()
	}
}

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
		w := attacktest.Start(t, attacktest.Options{Attackers: 16, Rules: hostileLists(sigCap, manifestCap),
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
