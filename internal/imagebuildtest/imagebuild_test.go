package imagebuildtest

import (
	"archive/tar"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
)

// TestSingleFile: one layer holding the file, executable, at its path;
// the entrypoint and platform set; the same input gives the same digest
// (so a signature made in one run names the image of the next).
func TestSingleFile(t *testing.T) {
	content := []byte("#!not really a binary")
	img, err := SingleFile("/bin/tool", content, "arm64", []string{"/bin/tool"}, []string{"run"})
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != "arm64" || strings.Join(cf.Config.Entrypoint, " ") != "/bin/tool" ||
		strings.Join(cf.Config.Cmd, " ") != "run" {
		t.Errorf("config: os %s arch %s entrypoint %v cmd %v", cf.OS, cf.Architecture, cf.Config.Entrypoint, cf.Config.Cmd)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %d, %v", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	hdr, err := tr.Next()
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(tr)
	if err != nil {
		t.Fatal(err)
	}
	if hdr.Name != "bin/tool" || hdr.Mode != 0o755 || string(got) != string(content) {
		t.Errorf("layer entry %s mode %o content %q", hdr.Name, hdr.Mode, got)
	}
	if _, err := tr.Next(); !errors.Is(err, io.EOF) {
		t.Errorf("more than one file in the layer: %v", err)
	}

	again, err := SingleFile("/bin/tool", content, "arm64", []string{"/bin/tool"}, []string{"run"})
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := img.Digest()
	d2, _ := again.Digest()
	if d1 != d2 {
		t.Errorf("same input, digests %s and %s", d1, d2)
	}
	if _, err := SingleFile("bin/tool", content, "arm64", nil, nil); err == nil {
		t.Error("a relative path was accepted")
	}
}

// TestPush: the digest Push returns is the one the registry serves.
func TestPush(t *testing.T) {
	reg := imagetest.StartRegistry(t)
	img, err := SingleFile(PluginPath, []byte("x"), "amd64", []string{PluginPath}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ref := reg + "/niv/plugin:dev"
	digest, err := Push(ref, img)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Head(tag)
	if err != nil {
		t.Fatal(err)
	}
	if desc.Digest.String() != digest {
		t.Errorf("pushed %s, registry serves %s", digest, desc.Digest)
	}
	if _, err := Push("not a reference", img); err == nil {
		t.Error("a bad reference was accepted")
	}
}
