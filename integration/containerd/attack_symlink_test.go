package containerd

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
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

// symlinkImage is a volume image with symlinks that point out of it:
// abs -> / , absetc -> /etc, up -> ../../.. , and a real dir d.
func symlinkImage(t *testing.T, ref string, program []byte) containerdtest.Image {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []*tar.Header{
		{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "abs", Typeflag: tar.TypeSymlink, Linkname: "/", Mode: 0o777},
		{Name: "absetc", Typeflag: tar.TypeSymlink, Linkname: "/etc", Mode: 0o777},
		{Name: "absd", Typeflag: tar.TypeSymlink, Linkname: "/d", Mode: 0o777},
		{Name: "up", Typeflag: tar.TypeSymlink, Linkname: "../../..", Mode: 0o777},
	} {
		h.ModTime = time.Unix(0, 0)
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.WriteHeader(&tar.Header{Name: "d/niv-sleep", Typeflag: tar.TypeReg, Mode: 0o755,
		Size: int64(len(program)), ModTime: time.Unix(0, 0)}); err != nil {
		t.Fatal(err)
	}
	tw.Write(program)
	tw.Close()
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

// TestAttackImageVolumeSymlinkSubPath: a SIGNED volume image (any public
// signed image with an absolute symlink to a directory, such as
// /var/run -> /run) mounted with that symlink as its subPath. If
// containerd's os.OpenInRoot check let it through and runc then followed
// the link on the host, the container would get a host directory while
// the plugin believes it is the verified image's.
func TestAttackImageVolumeSymlinkSubPath(t *testing.T) {
	w := newWorld(t, v24)
	w.restartPlugin(t, "--containerd-socket", w.socket(), "--cri-state-dir", w.criStateDir())
	w.pull(t, w.signed)
	img := symlinkImage(t, w.registry+"/e2e/atk-symlinks:v1", w.program)
	imagetest.SignLegacy(t, img.Repo(), img.Digest, w.key, imagetest.SignOptions{})
	w.pull(t, img)
	for _, sp := range []string{"abs", "absetc", "absd", "up", "abs/etc"} {
		t.Run(fmt.Sprintf("signed volume, subPath %q", sp), func(t *testing.T) {
			pod := w.runPod(t, "atk-symlink")
			ctx := context.Background()
			id, err := w.cri.CreateContainerWith(ctx, pod, "app", &cri.ImageSpec{Image: w.signed.Ref},
				[]*cri.Mount{kubeletVolume("/tools", img, sp)})
			if err != nil {
				t.Logf("refused: %s", containerdtest.CRIMessage(err))
				return
			}
			if err := w.cri.StartContainer(ctx, id); err != nil {
				t.Logf("start failed: %v", err)
				return
			}
			if err := w.cri.WaitRunning(ctx, id, wait); err != nil {
				t.Logf("not running: %v", err)
				return
			}
			st, err := w.cri.Runtime.ContainerStatus(ctx, &cri.ContainerStatusRequest{ContainerId: id, Verbose: true})
			if err != nil {
				t.Fatal(err)
			}
			var info struct{ Pid int }
			json.Unmarshal([]byte(st.GetInfo()["info"]), &info)
			root := fmt.Sprintf("/proc/%d/root/tools", info.Pid)
			ents, _ := os.ReadDir(root)
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			t.Logf("container sees /tools = %v", names)
			if _, err := os.Stat(filepath.Join(root, "hostname")); err == nil {
				t.Errorf("HOST ESCAPE: /tools holds the host's /etc")
			}
			if _, err := os.Stat(filepath.Join(root, "proc")); err == nil {
				t.Errorf("HOST ESCAPE: /tools holds a host root")
			}
		})
	}
}
