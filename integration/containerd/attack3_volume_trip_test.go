package containerd

import (
	"context"
	"fmt"
	"strings"
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

// TestAttack3VolumeCopiesFillVictimQueue (containerd v2.4): 63 tarpit
// copies of each of the victim's two volume images (126 pulls into the
// attacker's repositories). The victim's first create with both volumes
// fans out 128 lookups in its namespace, whose queue holds 64: the copies
// crowd it, the victim's create is refused, and every new image of the
// victim's namespace is refused busy (no verification started, so the
// retry is refused too) until the copies' verifications time out.
func TestAttack3VolumeCopiesFillVictimQueue(t *testing.T) {
	w := newWorld(t, v24)
	w.restartPlugin(t, "--containerd-socket", w.socket(), "--cri-state-dir", w.criStateDir(), "--verify-timeout", "8s")
	w.pull(t, w.signed)
	var vols []containerdtest.Image
	for v := range 2 {
		victim := w.push(t, fmt.Sprintf("/e2e/atk3q-victim%d:v1", v), fmt.Sprintf("atk3q victim volume %d", v))
		imagetest.SignLegacy(t, victim.Repo(), victim.Digest, w.key, imagetest.SignOptions{})
		w.pull(t, containerdtest.Image{Ref: victim.ByDigest(), Digest: victim.Digest, ConfigDigest: victim.ConfigDigest})
		vols = append(vols, victim)
		for i := range 63 {
			repo := fmt.Sprintf("e2e/atk3q-b/v%d-c%02d", v, i)
			c := w.push(t, "/"+repo+":v1", fmt.Sprintf("atk3q victim volume %d", v))
			// By digest: one name per copy (a tag pull records two).
			w.pull(t, containerdtest.Image{Ref: c.ByDigest(), Digest: c.Digest, ConfigDigest: c.ConfigDigest})
			w.faults.slow(repo)
			defer w.faults.heal(repo)
		}
	}
	next := w.push(t, "/e2e/atk3q-next:v1", "atk3q next")
	imagetest.SignLegacy(t, next.Repo(), next.Digest, w.key, imagetest.SignOptions{})
	w.pull(t, next)
	ctx := context.Background()
	if _, err := w.cri.CreateContainerOf(ctx, w.runPodOf(t, containerdtest.PodSpec{Namespace: "victim", Name: "atk3q-warm"}), "app",
		&cri.ImageSpec{Image: w.signed.Ref}); err != nil {
		t.Fatalf("warm: %s", containerdtest.CRIMessage(err))
	}
	pod := w.runPodOf(t, containerdtest.PodSpec{Namespace: "victim", Name: "atk3q-vol"})
	_, err := w.cri.CreateContainerWith(ctx, pod, "app", &cri.ImageSpec{Image: w.signed.Ref},
		[]*cri.Mount{kubeletVolume("/a", vols[0], ""), kubeletVolume("/b", vols[1], "")})
	if err != nil {
		t.Logf("HOLE (DoS): the victim's create with its two signed volumes refused: %s", containerdtest.CRIMessage(err))
	}
	pod2 := w.runPodOf(t, containerdtest.PodSpec{Namespace: "victim", Name: "atk3q-next"})
	begin := time.Now()
	start := begin
	for i := 1; ; i++ {
		t0 := time.Now()
		_, err := w.cri.CreateContainerOf(ctx, pod2, fmt.Sprintf("try-%d", i), &cri.ImageSpec{Image: next.ConfigDigest, UserSpecifiedImage: next.Ref})
		transientOnly(t, err, time.Since(t0))
		if err == nil {
			t.Logf("victim's next image allowed on try %d, %v after the first", i, time.Since(start).Round(time.Millisecond))
			if i > 2 {
				t.Logf("HOLE (DoS): the victim's namespace could verify nothing new for %v", time.Since(start).Round(time.Millisecond))
			}
			break
		}
		if i == 1 || i%10 == 0 {
			t.Logf("victim's next image, try %d (%v): %s", i, time.Since(start).Round(time.Millisecond), containerdtest.CRIMessage(err))
		}
		if time.Since(start) > 30*time.Second {
			t.Logf("HOLE (DoS): the victim's next image still refused after 30 s")
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	// And the volumes: how long until they are allowed?
	for i := 2; ; i++ {
		t0 := time.Now()
		_, err := w.cri.CreateContainerWith(ctx, pod, fmt.Sprintf("app%d", i), &cri.ImageSpec{Image: w.signed.Ref},
			[]*cri.Mount{kubeletVolume("/a", vols[0], ""), kubeletVolume("/b", vols[1], "")})
		transientOnly(t, err, time.Since(t0))
		if err == nil {
			t.Logf("the victim's volumes allowed on try %d, %v after its first create", i, time.Since(begin).Round(time.Millisecond))
			break
		}
		if i%10 == 2 {
			t.Logf("the victim's volumes, try %d (%v): %s", i, time.Since(begin).Round(time.Millisecond), containerdtest.CRIMessage(err))
		}
		if time.Since(begin) > 40*time.Second {
			// In this world the copies share the victim's registry host, so
			// its group (4 slots, 64 flights) is crowded too; with the
			// attacker's own hosts only the victim's namespace is (plugin
			// TestAttack3VolumeCopiesStarveSignedName: one or two verify
			// timeouts).
			t.Logf("HOLE (DoS): the victim's signed volumes still refused after 40 s (5 verify timeouts; the copies' errors are cached 1 s, so each retry starts them again): %s", containerdtest.CRIMessage(err))
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// transientOnly is what must hold for the victim even under the copies'
// attack (a residual in the threat model): every create is answered within
// containerd's NRI request timeout (the lock is not held), and a refusal
// is a "try again" (still running, too busy, or a copy's registry error,
// cached for --cache-error-ttl), never a denial of the signed image.
func transientOnly(t *testing.T, err error, took time.Duration) {
	t.Helper()
	if took >= requestTimeout {
		t.Errorf("a victim create took %v, past the %v NRI request timeout", took, requestTimeout)
	}
	if err == nil {
		return
	}
	if msg := containerdtest.CRIMessage(err); !strings.Contains(msg, "verification still running") && !strings.Contains(msg, "too many verifications") &&
		!strings.Contains(msg, "verification failed") {
		t.Errorf("the victim was refused for another reason than a transient one: %s", msg)
	}
}
