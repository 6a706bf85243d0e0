package containerd

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nri-image-verifier/nri-image-verifier/internal/containerdtest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
)

// lookAlikeCases: containerd >= 2.4 fills Container.Image.Name from the
// first of the records that share the container's image ID (tags first,
// then in order). Another tenant pulls a look-alike of a victim's signed
// image (the same config, one more manifest annotation, so another,
// unsigned, manifest digest) under a name that sorts first; the victim's
// next container is then named and verified as the look-alike.
func (w *world) lookAlikeCases(t *testing.T) {
	victim := w.push(t, "/e2e/victim:v1", "signed, shadowed by a look-alike")
	imagetest.SignLegacy(t, victim.Repo(), victim.Digest, w.key, imagetest.SignOptions{})
	look := w.registry + "/0-look-alike/victim:v1"
	w.pull(t, victim, w.pushLookAlike(t, victim, look))

	// As kubelet asks: the image ID it pulled, and the pod's image string
	// as the user-specified image (containerd's image-name annotation).
	spec := &cri.ImageSpec{Image: victim.ConfigDigest, UserSpecifiedImage: victim.Ref}
	t.Run("without the containerd socket: refused as the look-alike (the residual)", func(t *testing.T) {
		pod := w.runPod(t, "look-alike-no-socket")
		msg := w.expectRefusedOf(t, pod, "app", spec)
		if !strings.Contains(msg, look) {
			t.Errorf("refusal does not name the look-alike %s: %s", look, msg)
		}
	})
	t.Run("with the containerd socket: the requested record is verified; allowed and runs", func(t *testing.T) {
		w.restartPlugin(t, "--containerd-socket", w.socket())
		defer w.restartPlugin(t)
		pod := w.runPod(t, "look-alike-socket")
		id, err := w.cri.CreateContainerOf(context.Background(), pod, "app", spec)
		if err != nil {
			t.Fatalf("the victim's container refused: %s", containerdtest.CRIMessage(err))
		}
		w.checkStarted(t, id, victim, "look-alike-socket", "app")
		checkAudit(t, w.auditLine(t, "look-alike-socket", "app"), victim, "allow", true)
	})
}

func mustTag(t *testing.T, ref string) name.Tag {
	t.Helper()
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	return tag
}

// pushLookAlike pushes to ref a look-alike of victim: its config and
// layers, one more manifest annotation, so another, unsigned, manifest
// digest. It returns the look-alike, to pull.
func (w *world) pushLookAlike(t *testing.T, victim containerdtest.Image, ref string) containerdtest.Image {
	t.Helper()
	img, err := remote.Image(mustTag(t, victim.Ref))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(mustTag(t, ref), mutate.Annotations(img, map[string]string{"look": "alike"}).(v1.Image)); err != nil {
		t.Fatal(err)
	}
	return containerdtest.Image{Ref: ref, ConfigDigest: victim.ConfigDigest}
}
