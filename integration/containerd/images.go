// Package containerd is the real-containerd end of the integration tests:
// containerd v2.4 with NRI and the fail-closed default validator, runc, a
// loopback registry, the nri-image-verifier binary, all driven through the
// CRI API as kubelet drives them.
//
// The non-test files are shared with the demo's helper programs
// (integration/cmd): runnable images made without any download, and a small
// CRI client. The e2e harness and tests are in the _test.go files.
package containerd

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Image is a pushed runnable image.
type Image struct {
	Ref          string // as pushed: host/repo:tag
	Digest       string // manifest digest
	ConfigDigest string // the image ID containerd reports
}

// Repo is Ref without its tag.
func (i Image) Repo() string {
	r, err := name.NewTag(i.Ref)
	if err != nil {
		return i.Ref
	}
	return r.Repository.Name()
}

// ByDigest is the image's repo@digest reference.
func (i Image) ByDigest() string { return i.Repo() + "@" + i.Digest }

// ProgramPath is where the image's one program lives in its root file system.
const ProgramPath = "/niv-sleep"

// PushRunnable pushes to ref an OCI image of one layer holding program (a
// static binary, integration/cmd/niv-sleep) at ProgramPath, started with
// args. Images with different args have different digests, so one binary
// makes the pause image and any number of distinct app images.
func PushRunnable(ref string, program []byte, args ...string) (Image, error) {
	tag, err := name.NewTag(ref)
	if err != nil {
		return Image{}, fmt.Errorf("image reference %q: %w", ref, err)
	}
	layer, err := programLayer(program)
	if err != nil {
		return Image{}, err
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layer)
	if err != nil {
		return Image{}, fmt.Errorf("image %s: add layer: %w", ref, err)
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return Image{}, fmt.Errorf("image %s: config: %w", ref, err)
	}
	cf = cf.DeepCopy()
	// The platform must be the node's, or containerd's pull finds no match.
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config.Entrypoint = []string{ProgramPath}
	cf.Config.Cmd = args
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return Image{}, fmt.Errorf("image %s: set config: %w", ref, err)
	}
	if err := remote.Write(tag, img); err != nil {
		return Image{}, fmt.Errorf("push %s: %w", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		return Image{}, fmt.Errorf("image %s: digest: %w", ref, err)
	}
	c, err := img.ConfigName()
	if err != nil {
		return Image{}, fmt.Errorf("image %s: config digest: %w", ref, err)
	}
	return Image{Ref: ref, Digest: d.String(), ConfigDigest: c.String()}, nil
}

// programLayer is a gzipped tar of one executable file. A fixed mtime keeps
// the layer digest the same from run to run.
func programLayer(program []byte) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := &tar.Header{
		Name:     ProgramPath[1:],
		Mode:     0o755,
		Size:     int64(len(program)),
		Typeflag: tar.TypeReg,
		ModTime:  time.Unix(0, 0),
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	if _, err := tw.Write(program); err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	b := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	return layer, nil
}
