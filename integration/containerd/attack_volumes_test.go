package containerd

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nri-image-verifier/nri-image-verifier/internal/containerdtest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/imagebuildtest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
)

// TestAttackImageVolumes plays a tenant against the image-volume check on
// containerd v2.4: mounts asked for as kubelet asks for them (the image
// ID, not the tag), image subPaths of every spelling, index images, names
// deleted, and look-alike names another tenant pulls to deny a victim.
func TestAttackImageVolumes(t *testing.T) {
	w := newWorld(t, v24)
	w.restartPlugin(t, "--containerd-socket", w.socket(), "--cri-state-dir", w.criStateDir())
	w.pull(t, w.signed, w.bundled, w.unsigned)
	w.attackVolumeCases(t)
}

// TestAttackImageVolumesV22 is the same on containerd v2.2, which sends
// no image through NRI.
func TestAttackImageVolumesV22(t *testing.T) {
	w := newWorld(t, v22)
	w.restartPlugin(t, "--containerd-socket", w.socket(), "--cri-state-dir", w.criStateDir())
	w.pull(t, w.signed, w.bundled, w.unsigned)
	w.attackVolumeCases(t)
}

// kubeletVolume is the mount kubelet (1.33+) sends for an image volume:
// the image ID it pulled (PullImage's image ref), the pod spec's
// reference as UserSpecifiedImage, and the volumeMount's subPath.
func kubeletVolume(path string, img containerdtest.Image, subPath string) *cri.Mount {
	return &cri.Mount{ContainerPath: path, Readonly: true, ImageSubPath: subPath,
		Image: &cri.ImageSpec{Image: img.ConfigDigest, UserSpecifiedImage: img.Ref}}
}

// createWith creates, in a new pod, a container of the signed image with
// mounts; it returns the container ID or the refusal's message.
func (w *world) createWith(t *testing.T, podName string, mounts ...*cri.Mount) (string, string) {
	t.Helper()
	pod := w.runPod(t, podName)
	id, err := w.cri.CreateContainerWith(context.Background(), pod, "app", &cri.ImageSpec{Image: w.signed.Ref}, mounts)
	if err != nil {
		msg := containerdtest.CRIMessage(err)
		t.Logf("refused: %s", msg)
		return "", msg
	}
	return id, ""
}

// mustRefuse: the container must not be created (by the plugin or by
// containerd), else the tenant got unverified content in.
func (w *world) mustRefuse(t *testing.T, podName string, mounts ...*cri.Mount) string {
	t.Helper()
	id, msg := w.createWith(t, podName, mounts...)
	if id != "" {
		t.Errorf("FAIL OPEN: container with unverified image volume created (id %s)", id)
	}
	return msg
}

// dirImage is an unsigned or signed volume image with directories and
// symlinks, for image subPaths: d/niv-sleep, d/e/, l -> d, m -> d/e,
// dd -> ./d/../d.
func dirImage(t *testing.T, ref string, program []byte, say string) containerdtest.Image {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdrs := []*tar.Header{
		{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "d/e/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "d", Mode: 0o777},
		{Name: "m", Typeflag: tar.TypeSymlink, Linkname: "d/e", Mode: 0o777},
		{Name: "dd", Typeflag: tar.TypeSymlink, Linkname: "./d/../d", Mode: 0o777},
	}
	for _, h := range hdrs {
		h.ModTime = time.Unix(0, 0)
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.WriteHeader(&tar.Header{Name: "d/niv-sleep", Typeflag: tar.TypeReg, Mode: 0o755,
		Size: int64(len(program)), ModTime: time.Unix(0, 0)}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(program); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layer)
	if err != nil {
		t.Fatal(err)
	}
	img, err = imagebuildtest.WithConfig(mutate.ConfigMediaType(img, types.OCIConfigJSON), func(cf *v1.ConfigFile) {
		cf.OS, cf.Architecture = "linux", runtime.GOARCH
		cf.Config.Entrypoint = []string{"/d/niv-sleep"}
		cf.Config.Cmd = []string{say}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(mustTag(t, ref), img); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	c, _ := img.ConfigName()
	return containerdtest.Image{Ref: ref, Digest: d.String(), ConfigDigest: c.String()}
}

func (w *world) attackVolumeCases(t *testing.T) {
	t.Run("kubelet-style: signed volume by image ID: allowed", func(t *testing.T) {
		if id, msg := w.createWith(t, "atk-id-signed", kubeletVolume("/tools", w.bundled, "")); id == "" {
			t.Errorf("signed volume asked for by image ID refused: %s", msg)
		}
	})
	t.Run("kubelet-style: unsigned volume by image ID: refused", func(t *testing.T) {
		w.mustRefuse(t, "atk-id-unsigned", kubeletVolume("/tools", w.unsigned, ""))
	})

	unsignedDir := dirImage(t, w.registry+"/e2e/atk-dir:v1", w.program, "unsigned dir image")
	signedDir := dirImage(t, w.registry+"/e2e/atk-dir-signed:v1", w.program, "signed dir image")
	imagetest.SignLegacy(t, signedDir.Repo(), signedDir.Digest, w.key, imagetest.SignOptions{})
	w.pull(t, unsignedDir, signedDir)
	subPaths := []string{"d", "d/", "./d", "d//", "d/.", "d/e", "d/e/..", "l", "l/e", "m", "dd", "d/../d", "/d", "."}
	for _, sp := range subPaths {
		t.Run(fmt.Sprintf("unsigned volume, image subPath %q: refused", sp), func(t *testing.T) {
			msg := w.mustRefuse(t, "atk-sub-u", kubeletVolume("/tools", unsignedDir, sp))
			if msg != "" && !strings.Contains(msg, "image volume /tools") {
				t.Logf("refused, but not by the plugin's volume check: %s", msg)
			}
		})
		t.Run(fmt.Sprintf("signed volume, image subPath %q: allowed?", sp), func(t *testing.T) {
			if id, msg := w.createWith(t, "atk-sub-s", kubeletVolume("/tools", signedDir, sp)); id == "" {
				t.Logf("NOTE: signed volume with subPath %q refused: %s", sp, msg)
			}
		})
	}
	t.Run("two image volumes, the second unsigned: refused", func(t *testing.T) {
		w.mustRefuse(t, "atk-two", kubeletVolume("/a", w.bundled, ""), kubeletVolume("/b", unsignedDir, "d"))
	})
	t.Run("the same unsigned volume twice (second mount reuses the mounted dir): refused", func(t *testing.T) {
		w.mustRefuse(t, "atk-twice", kubeletVolume("/a", unsignedDir, ""), kubeletVolume("/b", unsignedDir, "d"))
	})
	t.Run("volume of an already-mounted image in the pod, second container: refused", func(t *testing.T) {
		// The first container (signed volume) mounts; the second asks for
		// an unsigned one in the same pod.
		pod := w.runPod(t, "atk-pod2")
		ctx := context.Background()
		if _, err := w.cri.CreateContainerWith(ctx, pod, "a", &cri.ImageSpec{Image: w.signed.Ref},
			[]*cri.Mount{kubeletVolume("/t", w.bundled, "")}); err != nil {
			t.Fatalf("first: %s", containerdtest.CRIMessage(err))
		}
		if id, err := w.cri.CreateContainerWith(ctx, pod, "b", &cri.ImageSpec{Image: w.signed.Ref},
			[]*cri.Mount{kubeletVolume("/t", unsignedDir, "")}); err == nil {
			t.Errorf("FAIL OPEN: second container with unsigned volume created (%s)", id)
		}
	})
	t.Run("volume is the container's own signed image: allowed", func(t *testing.T) {
		if id, msg := w.createWith(t, "atk-self", kubeletVolume("/self", w.signed, "")); id == "" {
			t.Errorf("refused: %s", msg)
		}
	})

	t.Run("index volume signed on the index: allowed", func(t *testing.T) {
		idx, err := containerdtest.PushRunnableIndex(w.registry+"/e2e/atk-idx:v1", w.program, "idx")
		if err != nil {
			t.Fatal(err)
		}
		w.pull(t, idx.Image)
		imagetest.SignLegacy(t, idx.Repo(), idx.Digest, w.key, imagetest.SignOptions{})
		if id, msg := w.createWith(t, "atk-idx", kubeletVolume("/tools", idx.Image, "")); id == "" {
			t.Errorf("refused: %s", msg)
		}
	})
	t.Run("index volume signed only on the other platform's manifest: refused", func(t *testing.T) {
		idx, err := containerdtest.PushRunnableIndex(w.registry+"/e2e/atk-idx-other:v1", w.program, "idx other")
		if err != nil {
			t.Fatal(err)
		}
		w.pull(t, idx.Image)
		imagetest.SignLegacy(t, idx.Repo(), idx.OtherManifest, w.key, imagetest.SignOptions{})
		w.mustRefuse(t, "atk-idx-other", kubeletVolume("/tools", idx.Image, ""))
	})
	t.Run("index volume: only the platform manifest signed: refused or allowed?", func(t *testing.T) {
		idx, err := containerdtest.PushRunnableIndex(w.registry+"/e2e/atk-idx-here:v1", w.program, "idx here")
		if err != nil {
			t.Fatal(err)
		}
		w.pull(t, idx.Image)
		imagetest.SignLegacy(t, idx.Repo(), idx.Manifest, w.key, imagetest.SignOptions{})
		id, msg := w.createWith(t, "atk-idx-here", kubeletVolume("/tools", idx.Image, ""))
		t.Logf("platform-manifest-signed index volume: created=%v msg=%s", id != "", msg)
	})

	t.Run("unsigned volume pulled by digest only: refused", func(t *testing.T) {
		u := w.push(t, "/e2e/atk-bydigest:v1", "unsigned by digest")
		byDigest := containerdtest.Image{Ref: u.ByDigest(), Digest: u.Digest, ConfigDigest: u.ConfigDigest}
		w.pull(t, byDigest)
		w.mustRefuse(t, "atk-bydigest", kubeletVolume("/tools", byDigest, ""))
	})
	t.Run("unsigned volume whose names were deleted (only the ID record left): refused", func(t *testing.T) {
		u := w.push(t, "/e2e/atk-noname:v1", "unsigned no name")
		w.pull(t, u, containerdtest.Image{Ref: u.ByDigest(), Digest: u.Digest, ConfigDigest: u.ConfigDigest})
		w.forgetNames(t, u)
		msg := w.mustRefuse(t, "atk-noname", kubeletVolume("/tools", u, ""))
		t.Logf("no-name refusal: %s", msg)
	})
	t.Run("signed volume whose names were deleted: refused (no name, no rule)", func(t *testing.T) {
		s := w.push(t, "/e2e/atk-noname-signed:v1", "signed no name")
		imagetest.SignLegacy(t, s.Repo(), s.Digest, w.key, imagetest.SignOptions{})
		w.pull(t, s, containerdtest.Image{Ref: s.ByDigest(), Digest: s.Digest, ConfigDigest: s.ConfigDigest})
		w.forgetNames(t, s)
		id, msg := w.createWith(t, "atk-noname-signed", kubeletVolume("/tools", s, ""))
		t.Logf("signed, nameless: created=%v msg=%s", id != "", msg)
	})

	// DoS: another tenant, with no access to the victim's pods, pulls the
	// victim's (public) signed volume image under a name whose rule is
	// stricter (here: the threshold rule, which the one-key signature does
	// not meet; in a cluster: the attacker's own registry, which no rule
	// allows). Every name used to have to pass, so the victim's volume was
	// refused; now one passing name allows it (the content is the same).
	t.Run("DoS: victim's signed volume after another tenant pulls it under a stricter name", func(t *testing.T) {
		victim := w.push(t, "/e2e/atk-victim:v1", "victim volume")
		imagetest.SignLegacy(t, victim.Repo(), victim.Digest, w.key, imagetest.SignOptions{})
		w.pull(t, victim)
		if id, msg := w.createWith(t, "atk-victim-before", kubeletVolume("/tools", victim, "")); id == "" {
			t.Fatalf("victim refused before the attack: %s", msg)
		}
		copyOf := w.push(t, "/e2e/threshold/atk-copy:v1", "victim volume")
		if copyOf.Digest != victim.Digest {
			t.Fatalf("copy digest %s != victim %s", copyOf.Digest, victim.Digest)
		}
		w.pull(t, copyOf)
		id, msg := w.createWith(t, "atk-victim-after", kubeletVolume("/tools", victim, ""))
		if id == "" {
			t.Errorf("DoS: the victim's signed volume is refused once another tenant pulled a stricter-named copy: %s", msg)
		}
	})
	t.Run("DoS: victim's signed volume after another tenant pulls a look-alike (same config) that sorts first", func(t *testing.T) {
		victim := w.push(t, "/e2e/atk-victim2:v1", "victim volume 2")
		imagetest.SignLegacy(t, victim.Repo(), victim.Digest, w.key, imagetest.SignOptions{})
		w.pull(t, victim)
		w.pull(t, w.pushLookAlike(t, victim, w.registry+"/0-look-alike/atk-victim2:v1"))
		id, msg := w.createWith(t, "atk-victim2", kubeletVolume("/tools", victim, ""))
		// A residual (threat model): refused, and the refusal says which
		// record was checked, so an operator can find the look-alike.
		if id == "" {
			t.Logf("HOLE (DoS): the victim's signed volume (asked for by image ID) is refused after a look-alike pull: %s", msg)
			if !strings.Contains(msg, "0-look-alike/atk-victim2") {
				t.Errorf("the refusal does not name the look-alike it checked: %s", msg)
			}
		}
	})
	t.Run("DoS: 65 names for the victim's digest", func(t *testing.T) {
		victim := w.push(t, "/e2e/atk-victim3:v1", "victim volume 3")
		imagetest.SignLegacy(t, victim.Repo(), victim.Digest, w.key, imagetest.SignOptions{})
		w.pull(t, victim)
		for i := 0; i < 65; i++ {
			c := w.push(t, fmt.Sprintf("/e2e/atk-victim3:copy%d", i), "victim volume 3")
			w.pull(t, c)
		}
		id, msg := w.createWith(t, "atk-victim3", kubeletVolume("/tools", victim, ""))
		// A residual (threat model): refused, saying why.
		if id == "" {
			t.Logf("HOLE (DoS): refused after 65 names: %s", msg)
			if !strings.Contains(msg, "more than the 64 checked") {
				t.Errorf("the refusal does not say the name limit was passed: %s", msg)
			}
		}
	})

	t.Run("DoS: victim's signed volume after another tenant pulls a copy from a tarpit repository", func(t *testing.T) {
		victim := w.push(t, "/e2e/atk-victim4:v1", "victim volume 4")
		imagetest.SignLegacy(t, victim.Repo(), victim.Digest, w.key, imagetest.SignOptions{})
		w.pull(t, victim)
		copyOf := w.push(t, "/e2e/atk-tarpit-copy:v1", "victim volume 4")
		w.pull(t, copyOf)
		w.faults.slow("e2e/atk-tarpit-copy")
		defer w.faults.heal("e2e/atk-tarpit-copy")
		start := time.Now()
		id, msg := w.createWith(t, "atk-victim4", kubeletVolume("/tools", victim, ""))
		if id == "" {
			t.Errorf("DoS: the victim's signed volume is refused after %v while another tenant's copy hangs: %s",
				time.Since(start).Round(time.Millisecond), msg)
		}
	})
	t.Run("DoS: a copy in another repository under the victim's own rule", func(t *testing.T) {
		// The signature is looked up in each name's repository, so a
		// byte-identical copy anywhere else is unsigned, whatever the rule.
		victim := w.push(t, "/e2e/atk-victim5:v1", "victim volume 5")
		imagetest.SignLegacy(t, victim.Repo(), victim.Digest, w.key, imagetest.SignOptions{})
		w.pull(t, victim)
		// One copy sorting after the victim's name, one before.
		for _, c := range []string{"/e2e/zzz-copy:v1", "/e2e/000-copy:v1"} {
			copyOf := w.push(t, c, "victim volume 5")
			w.pull(t, copyOf)
			if id, msg := w.createWith(t, "atk-victim5-"+strings.Trim(c, "/:ev12e"), kubeletVolume("/tools", victim, "")); id == "" {
				t.Errorf("DoS: refused by a same-rule copy %s: %s", c, msg)
			}
		}
	})
	t.Run("DoS: a same-rule copy that sorts first, before the victim's verdict is cached", func(t *testing.T) {
		victim := w.push(t, "/e2e/atk-victim6:v1", "victim volume 6")
		imagetest.SignLegacy(t, victim.Repo(), victim.Digest, w.key, imagetest.SignOptions{})
		w.pull(t, victim)
		copyOf := w.push(t, "/e2e/000-copy6:v1", "victim volume 6")
		w.pull(t, copyOf)
		if id, msg := w.createWith(t, "atk-victim6", kubeletVolume("/tools", victim, "")); id == "" {
			t.Errorf("DoS: refused by a same-rule copy that sorts first: %s", msg)
		}
	})
	t.Run("DoS (container images too): an unsigned same-rule copy verified first poisons the verdict for the digest", func(t *testing.T) {
		// The verdict cache is keyed by digest, config and rule, not by
		// repository, but the signature is looked up in the name's
		// repository: whichever name is verified first decides for all.
		victim := w.push(t, "/e2e/atk-victim7:v1", "victim image 7")
		imagetest.SignLegacy(t, victim.Repo(), victim.Digest, w.key, imagetest.SignOptions{})
		copyOf := w.push(t, "/e2e/tenant-b/copy7:v1", "victim image 7")
		w.pull(t, victim, copyOf)
		// The attacker's own pod, of its copy: refused (no signature in
		// its repository), and the deny is cached.
		// As kubelet asks: the image ID, and the pod's image string.
		if _, err := w.cri.CreateContainerOf(context.Background(), w.runPod(t, "atk-copy7"), "app",
			&cri.ImageSpec{Image: copyOf.ConfigDigest, UserSpecifiedImage: copyOf.Ref}); err != nil {
			t.Logf("the attacker's copy refused: %s", containerdtest.CRIMessage(err))
		} else {
			t.Logf("the attacker's copy allowed (named as the victim's signed image: same content)")
		}
		// The victim's pod, of its own signed image, a different name.
		pod := w.runPod(t, "atk-victim7")
		id, err := w.cri.CreateContainerOf(context.Background(), pod, "app", &cri.ImageSpec{Image: victim.ConfigDigest, UserSpecifiedImage: victim.Ref})
		if err != nil {
			// The verdict key names the repository now; before, this was
			// refused with the copy's "no cosign signature".
			t.Errorf("DoS: the victim's signed container image is refused after another tenant's copy was checked: %s",
				containerdtest.CRIMessage(err))
		} else {
			t.Logf("victim's container allowed (%s); audit: %v / %v", id, w.auditLine(t, "atk-copy7", "app"), w.auditLine(t, "atk-victim7", "app"))
		}
	})
	t.Run("DoS (container images too): a same-rule copy in a tarpit repository holds the digest's verification", func(t *testing.T) {
		victim := w.push(t, "/e2e/atk-victim8:v1", "victim image 8")
		imagetest.SignLegacy(t, victim.Repo(), victim.Digest, w.key, imagetest.SignOptions{})
		copyOf := w.push(t, "/e2e/tenant-b/tarpit8:v1", "victim image 8")
		w.pull(t, victim, copyOf)
		w.faults.slow("e2e/tenant-b/tarpit8")
		defer w.faults.heal("e2e/tenant-b/tarpit8")
		if _, err := w.cri.CreateContainerOf(context.Background(), w.runPod(t, "atk-tarpit8"), "app",
			&cri.ImageSpec{Image: copyOf.ConfigDigest, UserSpecifiedImage: copyOf.Ref}); err != nil {
			t.Logf("the attacker's copy refused: %s", containerdtest.CRIMessage(err))
		}
		// The copy's flight is the attacker's own (the key names the
		// repository); the shared registry host is tripped while it is
		// overdue, so the victim's first create may be answered pending,
		// and its retry gets the verdict.
		start := time.Now()
		pod := w.runPod(t, "atk-victim8")
		w.retryUntilRuns(t, pod, victim, "atk-victim8")
		t.Logf("victim's container allowed after %v", time.Since(start).Round(time.Millisecond))
	})
	t.Run("tarpit: many image volumes whose signature lookups hang: answered in time", func(t *testing.T) {
		var mounts []*cri.Mount
		for i := 0; i < 8; i++ {
			repo := fmt.Sprintf("e2e/atk-tarpit%d", i)
			img := w.push(t, "/"+repo+":v1", fmt.Sprintf("tarpit %d", i))
			w.pull(t, img)
			w.faults.slow(repo)
			defer w.faults.heal(repo)
			mounts = append(mounts, kubeletVolume(fmt.Sprintf("/t%d", i), img, ""))
		}
		start := time.Now()
		w.mustRefuse(t, "atk-tarpit", mounts...)
		took := time.Since(start)
		t.Logf("8 tarpit volumes refused in %v", took)
		if took > requestTimeout+time.Second {
			t.Errorf("create took %v, past containerd's NRI request timeout %v", took, requestTimeout)
		}
		// The plugin must still be connected: another container is decided.
		if id, msg := w.createWith(t, "atk-after-tarpit", kubeletVolume("/tools", w.bundled, "")); id == "" {
			t.Errorf("after the tarpit, a signed volume is refused: %s", msg)
		}
	})
}
