package plugin

import (
	"github.com/containerd/nri/pkg/api"

	"github.com/nri-image-verifier/nri-image-verifier/gate"
)

// imageNameAnnotation is the image as the CRI client asked for it: a tag, a
// repo@digest, a bare image ID or the CRI user_specified_image. Only a
// fallback name for runtimes that do not send Container.Image; never a
// source of digests.
const imageNameAnnotation = "io.kubernetes.cri.image-name"

// Identity says which image a container runs and where. The digests come
// only from Container.Image, which containerd >= 2.4 fills from the image
// record the rootfs was made from; older runtimes send none, and Digest
// stays empty (the gate then denies, or a Resolver fills it in). Image is
// Container.Image.Name, or the CRI annotation when the runtime sent no name.
// Nil pod or container give empty fields.
func Identity(pod *api.PodSandbox, ctr *api.Container) gate.Input {
	in := gate.Input{
		Namespace: pod.GetNamespace(),
		Pod:       pod.GetName(),
		PodUID:    pod.GetUid(),
		Container: ctr.GetName(),
		// The rootfs check of the fallback finds the container's snapshot
		// by it.
		ContainerID: ctr.GetId(),
	}
	img := ctr.GetImage()
	in.Image = img.GetName()
	in.Digest = img.GetDigest()
	in.ConfigDigest = img.GetConfigDigest()
	requested := ctr.GetAnnotations()[imageNameAnnotation]
	switch {
	case in.Image == "":
		in.Image = requested
	case requested != in.Image:
		// containerd >= 2.4 names the image by the first of the records
		// that share its ID, which may be another tenant's look-alike;
		// resolve prefers the record the pod asked for.
		in.Requested = requested
	}
	return in
}
