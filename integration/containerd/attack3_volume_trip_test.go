package containerd

import (
	"context"
	"fmt"
	"testing"
	"time"

	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nri-image-verifier/nri-image-verifier/internal/containerdtest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
)

// TestAttack3VolumeCopyTripsVictim (containerd v2.4): another tenant
// pulls a byte-identical copy of the victim's signed volume image from a
// repository whose signature lookups hang (its tarpit). Since 6ea6cdf the
// victim's volume is decided under every name side by side, in the
// VICTIM's namespace: the copy's verification is a flight charged to the
// victim's namespace (and the copy's registry), and when the signed name
// wins the copy's wait is cancelled, which marks that flight overdue and
// trips the victim's namespace until it ends (--verify-timeout). The
// victim's volume runs; its next new image is shed. No prewarm (the
// default), so the victim's name is not cached before its first create,
// as after every allow TTL (1 h) too.
func TestAttack3VolumeCopyTripsVictim(t *testing.T) {
	w := newWorld(t, v24)
	w.restartPlugin(t, "--containerd-socket", w.socket(), "--cri-state-dir", w.criStateDir(), "--verify-timeout", "8s")
	w.pull(t, w.signed)
	for _, attack := range []bool{false, true} {
		t.Run(fmt.Sprintf("tarpit copy %v", attack), func(t *testing.T) {
			sfx := fmt.Sprintf("%v", attack)
			victim := w.push(t, "/e2e/atk3-victim-"+sfx+":v1", "atk3 victim volume "+sfx)
			imagetest.SignLegacy(t, victim.Repo(), victim.Digest, w.key, imagetest.SignOptions{})
			next := w.push(t, "/e2e/atk3-next-"+sfx+":v1", "atk3 victim next "+sfx)
			imagetest.SignLegacy(t, next.Repo(), next.Digest, w.key, imagetest.SignOptions{})
			w.pull(t, victim, next)
			if attack {
				repo := "e2e/atk3-tenant-b/copy-" + sfx
				copyOf := w.push(t, "/"+repo+":v1", "atk3 victim volume "+sfx)
				if copyOf.Digest != victim.Digest {
					t.Fatalf("copy digest %s != victim %s", copyOf.Digest, victim.Digest)
				}
				w.pull(t, copyOf)
				w.faults.slow(repo)
				defer w.faults.heal(repo)
			}
			ctx := context.Background()
			// The container's own image verified first, so that only the
			// volume is at stake.
			if _, err := w.cri.CreateContainerOf(ctx, w.runPodOf(t, containerdtest.PodSpec{Namespace: "victim", Name: "atk3-warm-" + sfx}), "app",
				&cri.ImageSpec{Image: w.signed.Ref}); err != nil {
				t.Fatalf("warm: %s", containerdtest.CRIMessage(err))
			}
			pod := w.runPodOf(t, containerdtest.PodSpec{Namespace: "victim", Name: "atk3-vol-" + sfx})
			start := time.Now()
			if _, err := w.cri.CreateContainerWith(ctx, pod, "app", &cri.ImageSpec{Image: w.signed.Ref},
				[]*cri.Mount{kubeletVolume("/tools", victim, "")}); err != nil {
				t.Fatalf("the victim's signed volume refused: %s", containerdtest.CRIMessage(err))
			}
			t.Logf("victim's volume allowed in %v", time.Since(start).Round(time.Millisecond))
			// The victim's next new signed image, in its namespace.
			pod2 := w.runPodOf(t, containerdtest.PodSpec{Namespace: "victim", Name: "atk3-next-" + sfx})
			start = time.Now()
			_, err := w.cri.CreateContainerOf(ctx, pod2, "app", &cri.ImageSpec{Image: next.ConfigDigest, UserSpecifiedImage: next.Ref})
			took := time.Since(start).Round(time.Millisecond)
			switch {
			case err == nil:
				t.Logf("victim's next signed image allowed in %v", took)
			case !attack:
				t.Errorf("without the copy, the victim's next signed image refused: %s", containerdtest.CRIMessage(err))
			default:
				t.Logf("HOLE (DoS): after its volume was decided beside another tenant's tarpit copy, the victim's next signed image is refused in %v: %s",
					took, containerdtest.CRIMessage(err))
				// How long does it last? Retry until it runs.
				start = time.Now()
				for i := 2; ; i++ {
					_, err := w.cri.CreateContainerOf(ctx, pod2, fmt.Sprintf("try-%d", i), &cri.ImageSpec{Image: next.ConfigDigest, UserSpecifiedImage: next.Ref})
					if err == nil {
						t.Logf("victim's next image: retry %d allowed, %v after the refusal", i-1, time.Since(start).Round(time.Millisecond))
						break
					}
					if time.Since(start) > 20*time.Second {
						t.Fatalf("victim's next image still refused after 20 s: %s", containerdtest.CRIMessage(err))
					}
					time.Sleep(200 * time.Millisecond)
				}
			}
		})
	}
}
