package containerd

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nri-image-verifier/nri-image-verifier/internal/containerdtest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
)

// preferCostCase measures what prefer (plugin/handlers.go) costs
// each create on containerd v2.4.2 with the containerd socket: a pod whose
// image string names another record than the runtime's (here: a tenant's
// look-alike that sorts first) skips the cached fast path and reads
// containerd's image store and snapshots on every create, under the NRI
// lock, even when the verdict is cached. The baseline is the same signed
// image asked for by the name the runtime reports.
//
// Asserted (safe): the slow path stays well under the decision timeout
// (1.5 s); the figures are logged.
func (w *world) preferCostCase(t *testing.T) {
	w.restartPlugin(t, "--containerd-socket", w.socket())
	defer w.restartPlugin(t)
	plain := w.push(t, "/e2e/plain:v1", "signed, no look-alike")
	imagetest.SignLegacy(t, plain.Repo(), plain.Digest, w.key, imagetest.SignOptions{})
	victim := w.push(t, "/e2e/shadowed:v1", "signed, shadowed")
	imagetest.SignLegacy(t, victim.Repo(), victim.Digest, w.key, imagetest.SignOptions{})
	w.pull(t, plain, victim, w.pushLookAlike(t, victim, w.registry+"/0-look-alike/shadowed:v1"))

	measure := func(label string, img containerdtest.Image) []float64 {
		var ms []float64
		for i := range 15 {
			podName := fmt.Sprintf("cost-%s-%d", label, i)
			pod := w.runPod(t, podName)
			spec := &cri.ImageSpec{Image: img.ConfigDigest, UserSpecifiedImage: img.Ref}
			start := time.Now()
			if _, err := w.cri.CreateContainerOf(context.Background(), pod, "app", spec); err != nil {
				t.Fatalf("%s: %s", label, containerdtest.CRIMessage(err))
			}
			l := float64(time.Since(start).Microseconds()) / 1000
			line := w.auditLine(t, podName, "app")
			if name, _ := line["image"].(string); name != img.Ref {
				t.Errorf("%s: decided as %q, want %s", label, name, img.Ref)
			}
			hit, _ := line["cache_hit"].(bool)
			if i > 0 && !hit {
				t.Errorf("%s create %d: not a cache hit", label, i)
			}
			if i > 0 { // the first verifies
				ms = append(ms, l)
			}
		}
		sort.Float64s(ms)
		t.Logf("%s: CRI CreateContainer p50 %.3f ms, max %.3f ms (cached verdict)", label, ms[len(ms)/2], ms[len(ms)-1])
		return ms
	}
	base := measure("plain", plain)
	slow := measure("shadowed", victim)
	if m := slow[len(slow)-1]; m > 500 {
		t.Errorf("prefer's lookups took %.1f ms on a cached verdict (baseline max %.3f ms)", m, base[len(base)-1])
	}
}
