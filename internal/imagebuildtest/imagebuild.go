// Package imagebuildtest makes container images without Docker and without a
// base image (nothing is pulled): one static binary as the only layer of
// an empty image, its entrypoint set. The cluster test and `make
// cluster-demo` (integration/cluster) run the plugin from such an image,
// and the runnable test images (internal/containerdtest) are made the
// same way.
package imagebuildtest

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// PluginPath is where the plugin's binary lives in its image.
const PluginPath = "/nri-image-verifier"

// SingleFile is an OCI image for linux/arch whose one layer holds content
// at path (absolute), executable, started as entrypoint with args cmd.
func SingleFile(path string, content []byte, arch string, entrypoint, cmd []string) (v1.Image, error) {
	layer, err := fileLayer(path, content)
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layer)
	if err != nil {
		return nil, fmt.Errorf("add layer: %w", err)
	}
	return WithConfig(mutate.ConfigMediaType(img, types.OCIConfigJSON), func(cf *v1.ConfigFile) {
		// The platform must be the node's, or containerd's pull finds no match.
		cf.OS, cf.Architecture = "linux", arch
		cf.Config.Entrypoint = entrypoint
		cf.Config.Cmd = cmd
	})
}

// WithConfig is img with its config file changed by edit.
func WithConfig(img v1.Image, edit func(*v1.ConfigFile)) (v1.Image, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cf = cf.DeepCopy()
	edit(cf)
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("set config: %w", err)
	}
	return img, nil
}

// fileLayer is a gzipped tar of one executable file. A fixed mtime keeps
// the layer digest the same from run to run.
func fileLayer(path string, content []byte) (v1.Layer, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("layer: path %q is not absolute", path)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := &tar.Header{
		Name:     path[1:],
		Mode:     0o755,
		Size:     int64(len(content)),
		Typeflag: tar.TypeReg,
		ModTime:  time.Unix(0, 0),
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	if _, err := tw.Write(content); err != nil {
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

// Plugin is the plugin's image around binary (built static, as
// daemontest.Static builds it: no libc in an empty image): the binary
// alone, run as its entrypoint; the chart passes its arguments.
func Plugin(binary, arch string) (v1.Image, error) {
	b, err := os.ReadFile(binary) // #nosec G304 -- the binary the caller built, for test images only
	if err != nil {
		return nil, fmt.Errorf("plugin image: %w", err)
	}
	img, err := SingleFile(PluginPath, b, arch, []string{PluginPath}, nil)
	if err != nil {
		return nil, fmt.Errorf("plugin image: %w", err)
	}
	return img, nil
}

// Push pushes img to ref (host/repo:tag) and returns its manifest digest.
func Push(ref string, img v1.Image) (string, error) {
	tag, err := name.NewTag(ref)
	if err != nil {
		return "", fmt.Errorf("image reference %q: %w", ref, err)
	}
	if err := remote.Write(tag, img); err != nil {
		return "", fmt.Errorf("push %s: %w", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		return "", fmt.Errorf("push %s: digest: %w", ref, err)
	}
	return d.String(), nil
}
