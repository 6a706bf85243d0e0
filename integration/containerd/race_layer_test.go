package containerd

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	"github.com/containerd/nri/pkg/stub"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nri-image-verifier/nri-image-verifier/internal/containerdtest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/imagebuildtest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
)

// TestContainerdFallbackRepointExtraLayer attacks Bind's user-namespace
// allowance ("one level up is trusted") on containerd v2.2.9: the unsigned
// image is the signed image's layers plus one more layer of the
// attacker's, with its own config. The container's rootfs snapshot then
// sits on chain(signed + extra), a committed snapshot whose own parent is
// chain(signed), which is exactly what the remapped-copy allowance
// accepts. The record is deleted and created again on the signed image
// during the create (fresh timestamps: no re-point window), as the racing
// NRI plugin of race_test.go does.
//
// Safe behaviour (asserted): the unsigned image's container is refused by
// the rootfs check. It was created before that check stopped following
// one level up.
func (w *world) repointExtraLayerCase(t *testing.T) {
	ctx := context.Background()

	signed, victim := w.pushExtraLayer(t, "race-extra")
	w.pull(t, victim, signed)

	images := w.images(t)
	r := &racer{images: images, pod: "race-extra", record: victim.Ref, to: images.get(t, signed.Ref), recreate: true, err: make(chan error, 1)}
	s, err := stub.New(r, stub.WithPluginName("racer"), stub.WithPluginIdx("05"), stub.WithSocketPath(w.nriSocket()))
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := s.Start(sctx); err != nil {
		t.Fatal(err)
	}
	defer s.Stop()

	pod := w.runPod(t, "race-extra")
	id, err := w.cri.CreateContainer(ctx, pod, "app", victim.Ref)
	select {
	case rerr := <-r.err:
		if rerr != nil {
			t.Fatalf("the racer could not re-point %s: %v", victim.Ref, rerr)
		}
	default:
		t.Fatal("the racer never ran: the case proves nothing")
	}
	if err != nil {
		msg := containerdtest.CRIMessage(err)
		if !strings.Contains(msg, rootfsMismatch) {
			t.Errorf("refused, but not by the rootfs check: %s", msg)
		}
		return
	}
	t.Logf("audit line: %v", w.auditLine(t, "race-extra", "app"))
	w.checkStarted(t, id, victim, "race-extra", "app")
	t.Errorf("HOLE: the unsigned image %s (signed layers plus one) was created and runs: the gate verified %s and Bind accepted the rootfs one level up", victim.Digest, signed.Digest)
}

const rootfsMismatch = "the container's root filesystem was not made from the verified image"

// pushExtraLayer pushes a signed image and an unsigned one made of the
// signed one's layer, one more layer and its own command line, to
// /e2e/<repo>:signed and :v1.
func (w *world) pushExtraLayer(t *testing.T, repo string) (signed, unsigned containerdtest.Image) {
	t.Helper()
	signed, err := containerdtest.PushRunnable(w.registry+"/e2e/"+repo+":signed", w.program, "signed base")
	if err != nil {
		t.Fatal(err)
	}
	imagetest.SignLegacy(t, signed.Repo(), signed.Digest, w.key, imagetest.SignOptions{})

	// The unsigned image: the signed one's layer, one extra layer, and a
	// config of its own (another command line).
	tag, err := name.NewTag(signed.Ref)
	if err != nil {
		t.Fatal(err)
	}
	base, err := remote.Image(tag)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := imagebuildtest.SingleFile("/attacker-payload", []byte("not signed by anyone\n"), runtime.GOARCH, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	extra, err := payload.Layers()
	if err != nil {
		t.Fatal(err)
	}
	evil, err := mutate.AppendLayers(base, extra...)
	if err != nil {
		t.Fatal(err)
	}
	const says = "unsigned: the signed layers plus one"
	evil, err = imagebuildtest.WithConfig(evil, func(cf *v1.ConfigFile) { cf.Config.Cmd = []string{says} })
	if err != nil {
		t.Fatal(err)
	}
	evilRef := w.registry + "/e2e/" + repo + ":v1"
	etag, err := name.NewTag(evilRef)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(etag, evil); err != nil {
		t.Fatal(err)
	}
	ed, _ := evil.Digest()
	ec, _ := evil.ConfigName()
	victim := containerdtest.Image{Ref: evilRef, Digest: ed.String(), ConfigDigest: ec.String(), Says: says}
	return signed, victim
}

// TestContainerdFallbackRepointedLongAgo: the same unsigned image, on
// containerd v2.2.9, with only what a tenant has. kubelet resolves the
// pod's tag to the image ID and passes that ID to the CRI, which builds
// the container from it; the gate resolves the tag again at the hook. The
// tenant's other pod (imagePullPolicy Always) pulls the tag, which its
// registry has moved to the signed image, just after kubelet resolved it;
// the create then waits in the runtime's NRI queue longer than
// RepointWindow (30 s), which TestShedJustUnderDeadline shows a tenant can
// cause. The record's re-point is then "old" and the extra-layer rootfs
// passes the remapped-copy allowance. The queue wait is played here by
// waiting before the CRI call, which the gate cannot tell apart.
//
// Safe behaviour (asserted): refused by the rootfs check. It was created
// before that check stopped following one level up.
func (w *world) repointedLongAgoCase(t *testing.T) {
	ctx := context.Background()
	signed, victim := w.pushExtraLayer(t, "late-extra")
	w.pull(t, victim, signed)

	images := w.images(t)
	to := images.get(t, signed.Ref)
	// The other pod's pull of the moved tag: containerd's CRI updates the
	// record's target (as the racer's update case does).
	if _, err := images.Update(images.ctx, &imagesapi.UpdateImageRequest{Image: &imagesapi.Image{Name: victim.Ref, Target: to.GetTarget(), Labels: to.GetLabels()}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(31 * time.Second) // RepointWindow and a second: the NRI queue's wait

	pod := w.runPod(t, "late-extra")
	spec := &cri.ImageSpec{Image: victim.ConfigDigest, UserSpecifiedImage: victim.Ref}
	id, err := w.cri.CreateContainerOf(ctx, pod, "app", spec)
	if err != nil {
		msg := containerdtest.CRIMessage(err)
		if !strings.Contains(msg, rootfsMismatch) {
			t.Errorf("refused, but not by the rootfs check: %s", msg)
		}
		return
	}
	t.Logf("audit line: %v", w.auditLine(t, "late-extra", "app"))
	w.checkStarted(t, id, victim, "late-extra", "app")
	t.Errorf("HOLE: the unsigned image %s (signed layers plus one) was created by its ID and runs: the gate verified the tag's record, re-pointed 31 s ago to %s", victim.Digest, signed.Digest)
}
