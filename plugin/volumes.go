package plugin

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/containerd/nri/pkg/api"
)

// DefaultCRIStateDir is containerd's default CRI state directory (its CRI
// plugin's state_dir). Image volumes are mounted from under it.
const DefaultCRIStateDir = "/run/containerd/io.containerd.grpc.v1.cri"

// imageVolumesDir is the directory under the CRI state directory that
// containerd (>= 2.1) mounts image volumes from:
// <state dir>/image-volumes/<sandbox id>/<hex of the image's target digest>
// (containerd's getImageVolumeHostPath).
const imageVolumesDir = "image-volumes"

// ImageVolume is one image volume (Kubernetes volumes[].image) of a
// container: a second image's file system, read-only but executable. NRI
// sends only the bind mount the runtime made of it; the digest is in its
// source path, and nothing in the request names the image.
type ImageVolume struct {
	// Destination is where the container sees the volume.
	Destination string
	// Source is the host path the runtime mounts.
	Source string
	// Dir is the volume's folder, Source without the image subPath: the
	// key of the snapshot containerd mounted there.
	Dir string
	// Digest is the image's target digest (index or manifest), "sha256:<hex>".
	Digest string
}

// MountError is a mount that looks like an image volume but does not parse.
type MountError struct {
	Destination, Source string
	Err                 error
}

func (e *MountError) Error() string {
	return fmt.Sprintf("mount %s (source %q): %v", e.Destination, e.Source, e.Err)
}

func (e *MountError) Unwrap() error { return e.Err }

// ImageVolumes returns the image volume mounts of a container in sandbox
// sandboxID, given containerd's CRI state directory stateDir (absolute and
// clean). A mount that looks like an image volume but does not parse
// strictly is a *MountError naming its destination: the container must then be
// refused, for its content cannot be told. Mounts that are not image
// volumes are ignored.
func ImageVolumes(stateDir, sandboxID string, mounts []*api.Mount) ([]ImageVolume, error) {
	return imageVolumesUnder(volumesBase(stateDir), sandboxID, mounts)
}

// volumesBase is the folder image volumes are mounted from.
func volumesBase(stateDir string) string { return path.Join(stateDir, imageVolumesDir) }

// imageVolumesUnder is ImageVolumes given volumesBase(stateDir), which the
// plugin computes once rather than on every request.
func imageVolumesUnder(base, sandboxID string, mounts []*api.Mount) ([]ImageVolume, error) {
	var vols []ImageVolume
	for _, m := range mounts {
		v, ok, err := imageVolume(base, sandboxID, m.GetSource())
		if err != nil {
			return nil, &MountError{Destination: m.GetDestination(), Source: m.GetSource(), Err: err}
		}
		if ok {
			v.Destination = m.GetDestination()
			vols = append(vols, v)
		}
	}
	return vols, nil
}

// imageVolume parses one mount source. ok is false for a mount that is not
// an image volume.
func imageVolume(base, sandboxID, src string) (v ImageVolume, ok bool, err error) {
	// Not CutPrefix(src, base+"/"): that concatenation would allocate for
	// every mount of every container.
	rest, under := strings.CutPrefix(src, base)
	if under {
		rest, under = strings.CutPrefix(rest, "/")
	}
	if !under {
		if src == base || lookalike(src) {
			// Another state directory's image volume (the flag does not
			// match containerd's state_dir), or a hostPath dressed as one:
			// either way the content cannot be named from here.
			return v, false, fmt.Errorf("looks like an image volume but is not under %s/<sandbox id>/<digest>; "+
				"if containerd's CRI state_dir is elsewhere, set --cri-state-dir (chart value criStateDir)", base)
		}
		return v, false, nil
	}
	// rest is <sandbox id>/<hex>[/<image subPath>]: a subPath is still
	// that image's content. containerd makes the first two parts itself,
	// exactly; the subPath is the pod's, joined as written (kubelet
	// refuses only absolute ones and ".."), so "d/", "./d" and "d//e" are
	// taken as they are and only a ".." that could climb out is refused.
	parts := strings.SplitN(rest, "/", 3)
	if len(parts) < 2 {
		return v, false, errors.New("mounts an image-volumes directory itself, not one image volume")
	}
	if parts[0] == "" || (sandboxID != "" && parts[0] != sandboxID) {
		return v, false, fmt.Errorf("image volume of sandbox %q, not of this container's sandbox %q", parts[0], sandboxID)
	}
	if !isHex64(parts[1]) {
		return v, false, fmt.Errorf("image volume directory %q is not a sha256 digest (64 lowercase hex digits)", parts[1])
	}
	if len(parts) == 3 && slices.Contains(strings.Split(parts[2], "/"), "..") {
		return v, false, errors.New("image volume subPath climbs out of the volume (\"..\")")
	}
	dir := src[:len(base)+1+len(parts[0])+1+len(parts[1])]
	return ImageVolume{Source: src, Dir: dir, Digest: "sha256:" + parts[1]}, true, nil
}

// lookalike says whether src has the shape of an image volume's path,
// .../image-volumes/<id>/<64 hex digits, any case>[/...], wherever it is.
// It runs on every mount of every container, so it does not allocate.
func lookalike(src string) bool {
	const marker = "/" + imageVolumesDir + "/"
	for {
		i := strings.Index(src, marker)
		if i < 0 {
			return false
		}
		src = src[i+len(marker)-1:] // keep the slash: the next marker may start here
		_, rest, ok := strings.Cut(src[1:], "/")
		if ok {
			seg, _, _ := strings.Cut(rest, "/")
			if isHex64Fold(seg) {
				return true
			}
		}
	}
}

// isHex64Fold is isHex64 in either case.
func isHex64Fold(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i] | 0x20 // ASCII lower case; digits are unchanged
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// isHex64 says whether s is 64 lowercase hex digits, a sha256 digest's hex.
func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
