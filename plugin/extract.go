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
	}
	img := ctr.GetImage()
	in.Image = img.GetName()
	in.Digest = img.GetDigest()
	in.ConfigDigest = img.GetConfigDigest()
	if in.Image == "" {
		in.Image = ctr.GetAnnotations()[imageNameAnnotation]
	}
	return in
}
