// Package containerdtest builds and runs a real containerd world for tests
// and the demo: containerd built once per version and cached
// (hack/install-containerd.sh), its config rendered from the demo's
// template, containerd and other third-party daemons as processes (Proc),
// a small CRI client that drives it as kubelet does, runnable images made
// without any download (one static program, cmd/niv-sleep), and the
// clean-up of everything a run leaves outside its directory (shims,
// mounts, cgroups). The nri-image-verifier daemon itself runs through
// internal/daemontest.
//
// It serves the e2e suite (integration/containerd), the single-node
// cluster (integration/cluster), the benchmarks' containerd section and
// the demo's helper programs (cmd/niv-registry, cmd/niv-cri).
package containerdtest

import (
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/nri-image-verifier/nri-image-verifier/internal/daemontest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/imagebuildtest"
)

// Image is a pushed runnable image.
type Image struct {
	Ref          string // as pushed: host/repo:tag
	Digest       string // manifest digest
	ConfigDigest string // the image ID containerd reports
	Says         string // what its container prints first (its arguments)
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

// ProgramPkg is that program's main package, relative to the repository
// root: it prints its arguments, then sleeps until it is signalled.
const ProgramPkg = "./internal/containerdtest/cmd/niv-sleep"

// Program is the images' one program, built static (the images hold
// nothing else) once per test process.
func Program() ([]byte, error) {
	bin, err := daemontest.Build(ProgramPkg, daemontest.Static)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(bin) // #nosec G304 -- the binary just built
}

// PushRunnable pushes to ref an OCI image of one layer holding program (a
// static binary, Program) at ProgramPath, started with
// args. Images with different args have different digests, so one binary
// makes the pause image and any number of distinct app images.
func PushRunnable(ref string, program []byte, args ...string) (Image, error) {
	tag, err := name.NewTag(ref)
	if err != nil {
		return Image{}, fmt.Errorf("image reference %q: %w", ref, err)
	}
	img, err := runnable(program, runtime.GOARCH, args)
	if err != nil {
		return Image{}, fmt.Errorf("image %s: %w", ref, err)
	}
	if err := remote.Write(tag, img); err != nil {
		return Image{}, fmt.Errorf("push %s: %w", ref, err)
	}
	return describe(ref, img, args)
}

// Index is a pushed multi-platform index (Image.Digest is the index's
// digest, Image.ConfigDigest the config of this node's platform).
type Index struct {
	Image
	Manifest      string // the manifest for this node's platform (runnable)
	OtherManifest string // the manifest for another platform (not runnable)
	OtherPlatform string // that platform, "linux/<arch>"
}

// PushRunnableIndex pushes to ref an OCI index of two images: for this
// node's platform, the image PushRunnable makes; for another architecture,
// a random one-layer image that could not run anyway. As on a real node,
// containerd pulls only the first.
func PushRunnableIndex(ref string, program []byte, args ...string) (Index, error) {
	tag, err := name.NewTag(ref)
	if err != nil {
		return Index{}, fmt.Errorf("image reference %q: %w", ref, err)
	}
	here, err := runnable(program, runtime.GOARCH, args)
	if err != nil {
		return Index{}, fmt.Errorf("image %s: %w", ref, err)
	}
	otherArch := "arm64"
	if runtime.GOARCH == otherArch {
		otherArch = "amd64"
	}
	other, err := random.Image(512, 1)
	if err != nil {
		return Index{}, fmt.Errorf("image %s: %w", ref, err)
	}
	other, err = imagebuildtest.WithConfig(mutate.ConfigMediaType(mutate.MediaType(other, types.OCIManifestSchema1), types.OCIConfigJSON),
		func(cf *v1.ConfigFile) { cf.OS, cf.Architecture = "linux", otherArch })
	if err != nil {
		return Index{}, fmt.Errorf("image %s: %w", ref, err)
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	idx = mutate.AppendManifests(idx,
		mutate.IndexAddendum{Add: other, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: otherArch}}},
		mutate.IndexAddendum{Add: here, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}}},
	)
	if err := remote.WriteIndex(tag, idx); err != nil {
		return Index{}, fmt.Errorf("push index %s: %w", ref, err)
	}
	out := Index{OtherPlatform: "linux/" + otherArch}
	if out.Image, err = describe(ref, here, args); err != nil {
		return Index{}, err
	}
	out.Manifest = out.Digest
	d, err := idx.Digest()
	if err != nil {
		return Index{}, fmt.Errorf("index %s: digest: %w", ref, err)
	}
	out.Digest = d.String()
	od, err := other.Digest()
	if err != nil {
		return Index{}, fmt.Errorf("index %s: digest: %w", ref, err)
	}
	out.OtherManifest = od.String()
	return out, nil
}

// runnable is the image PushRunnable pushes, for architecture arch.
func runnable(program []byte, arch string, args []string) (v1.Image, error) {
	return imagebuildtest.SingleFile(ProgramPath, program, arch, []string{ProgramPath}, args)
}

func describe(ref string, img v1.Image, args []string) (Image, error) {
	d, err := img.Digest()
	if err != nil {
		return Image{}, fmt.Errorf("image %s: digest: %w", ref, err)
	}
	c, err := img.ConfigName()
	if err != nil {
		return Image{}, fmt.Errorf("image %s: config digest: %w", ref, err)
	}
	return Image{Ref: ref, Digest: d.String(), ConfigDigest: c.String(), Says: strings.Join(args, " ")}, nil
}
