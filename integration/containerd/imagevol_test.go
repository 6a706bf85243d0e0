package containerd

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nri-image-verifier/nri-image-verifier/internal/containerdtest"
)

// TestContainerdImageVolumes: an image volume (Kubernetes volumes[].image,
// which kubelet asks for as a CRI mount with an image) puts a second
// image's files, executable, into the container. containerd v2.4 mounts
// it from its CRI state dir; the plugin must verify that image too, under
// its own rule, or a signed image runs an unsigned volume's binary.
func TestContainerdImageVolumes(t *testing.T) {
	w := newWorld(t, v24)
	// The same image as w.unsigned (same program, same arguments, so the
	// same digest) under a name an audit-mode rule covers: a look-alike
	// name someone pulled onto the node.
	lookalike := w.push(t, "/e2e/audited/tools:v1", "unsigned")
	if lookalike.Digest != w.unsigned.Digest {
		t.Fatalf("look-alike %s has digest %s, want %s's %s", lookalike.Ref, lookalike.Digest, w.unsigned.Ref, w.unsigned.Digest)
	}
	// kubelet pulls a volume's image before it creates the container.
	w.pull(t, w.signed, w.bundled, w.unsigned)

	t.Run("--cri-state-dir not containerd's: refused, saying which flag to set", func(t *testing.T) {
		// The plugin runs with the default state dir, not this world's:
		// the volume's mount has the shape of an image volume elsewhere.
		msg := w.expectVolumeRefused(t, "vol-wrong-dir", w.bundled.Ref)
		for _, want := range []string{"image volume /tools", "looks like an image volume", "--cri-state-dir"} {
			if !strings.Contains(msg, want) {
				t.Errorf("refusal does not say %q: %s", want, msg)
			}
		}
	})

	w.restartPlugin(t, "--cri-state-dir", w.criStateDir())
	t.Run("no containerd socket: refused, saying how to name the volume", func(t *testing.T) {
		msg := w.expectVolumeRefused(t, "vol-no-store", w.bundled.Ref)
		for _, want := range []string{"image volume /tools: image", w.bundled.Digest, "--containerd-socket", "containerdFallback.enabled"} {
			if !strings.Contains(msg, want) {
				t.Errorf("refusal does not say %q: %s", want, msg)
			}
		}
	})

	w.restartPlugin(t, "--containerd-socket", w.socket(), "--cri-state-dir", w.criStateDir())
	w.imageVolumeCases(t)
	t.Run("unsigned image volume also named under an audit-mode rule: allowed as that rule's audit-deny", func(t *testing.T) {
		// Both names are containerd's for one digest, the content the
		// same: the volume is decided as a pod naming the audit-mode name
		// would be, and the audit line says so.
		w.pull(t, lookalike)
		ctx := context.Background()
		pod := w.runPod(t, "vol-lookalike")
		if _, err := w.cri.CreateContainerWith(ctx, pod, "app", &cri.ImageSpec{Image: w.signed.Ref},
			[]*cri.Mount{containerdtest.ImageVolume("/tools", lookalike.Ref)}); err != nil {
			t.Fatalf("refused: %s", containerdtest.CRIMessage(err))
		}
		lines := w.auditLines(t, "vol-lookalike", "app")
		if len(lines) != 2 || lines[1]["volume"] != "/tools" || lines[1]["verdict"] != "audit-deny" || lines[1]["image"] != lookalike.Ref {
			t.Errorf("audit lines %v, want the volume's audit-deny under %s", lines, lookalike.Ref)
		}
	})
}

// imageVolumeCases: with the plugin naming image volumes (containerd
// socket and CRI state dir given), a signed image with an unsigned image
// volume is refused, naming the volume, and with a signed one it runs.
func (w *world) imageVolumeCases(t *testing.T) {
	t.Run("signed image, unsigned image volume: refused, naming the volume", func(t *testing.T) {
		msg := w.expectVolumeRefused(t, "vol-unsigned", w.unsigned.Ref)
		for _, want := range []string{"image volume /tools: image " + w.unsigned.Ref + " (" + w.unsigned.Digest + ") denied by rule", noSignature} {
			if !strings.Contains(msg, want) {
				t.Errorf("refusal does not say %q: %s", want, msg)
			}
		}
		lines := w.auditLines(t, "vol-unsigned", "app")
		if len(lines) != 2 {
			t.Fatalf("audit lines %v, want the image's allow and the volume's deny", lines)
		}
		checkAudit(t, lines[0], w.signed, "allow", true)
		checkAudit(t, lines[1], w.unsigned, "deny", false)
		if lines[1]["volume"] != "/tools" {
			t.Errorf("the volume's audit line does not name /tools: %v", lines[1])
		}
	})
	t.Run("signed image, signed image volume: allowed and runs", func(t *testing.T) {
		ctx := context.Background()
		pod := w.runPod(t, "vol-signed")
		id, err := w.cri.CreateContainerWith(ctx, pod, "app", &cri.ImageSpec{Image: w.signed.Ref},
			[]*cri.Mount{containerdtest.ImageVolume("/tools", w.bundled.Ref)})
		if err != nil {
			t.Fatalf("container with a signed image volume refused: %s", containerdtest.CRIMessage(err))
		}
		w.checkStarted(t, id, w.signed, "vol-signed", "app")
		lines := w.auditLines(t, "vol-signed", "app")
		if len(lines) != 2 || lines[1]["volume"] != "/tools" {
			t.Fatalf("audit lines %v, want the image's and the volume's allow", lines)
		}
		checkAudit(t, lines[1], w.bundled, "allow", true)
	})
}

// expectVolumeRefused creates, in a new pod, a container of the signed
// image with an image volume of volume at /tools, expects it refused and
// returns the message.
func (w *world) expectVolumeRefused(t *testing.T, podName, volume string) string {
	t.Helper()
	pod := w.runPod(t, podName)
	ctx := context.Background()
	id, err := w.cri.CreateContainerWith(ctx, pod, "app", &cri.ImageSpec{Image: w.signed.Ref},
		[]*cri.Mount{containerdtest.ImageVolume("/tools", volume)})
	if err == nil {
		t.Fatalf("FAIL OPEN: container of %s with image volume %s was created (id %s)", w.signed.Ref, volume, id)
	}
	msg := containerdtest.CRIMessage(err)
	t.Logf("CRI CreateContainer refused: %s", msg)
	if !strings.Contains(msg, "failed to get NRI adjustment for container") {
		t.Errorf("not refused by the plugin: %s", msg)
	}
	return msg
}

// criStateDir is containerd's CRI state dir in this world's config
// (state = @DIR@/state): image volumes are mounted from under it.
func (w *world) criStateDir() string {
	return filepath.Join(w.dir, "state", "io.containerd.grpc.v1.cri")
}
