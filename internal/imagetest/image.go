package imagetest

import (
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Image is a pushed image manifest.
type Image struct {
	Platform     v1.Platform
	Digest       string // manifest digest
	ConfigDigest string
}

// Index is a pushed multi-platform index.
type Index struct {
	Digest    string
	Platforms []Image // linux/amd64, then linux/arm64
}

// PushImage pushes a small random image to ref ("host/repo:tag") and
// returns its manifest digest.
func PushImage(t testing.TB, ref string) string {
	t.Helper()
	return PushImageConfig(t, ref).Digest
}

// PushImageConfig is PushImage that also returns the config digest.
func PushImageConfig(t testing.TB, ref string) Image {
	t.Helper()
	tag := parseTag(t, ref)
	img := randomImage(t, v1.Platform{OS: "linux", Architecture: "amd64"})
	if err := remote.Write(tag, img); err != nil {
		t.Fatalf("imagetest: push %s: %v", ref, err)
	}
	return describe(t, img, v1.Platform{OS: "linux", Architecture: "amd64"})
}

// PushIndex pushes an OCI index of two random images (linux/amd64 and
// linux/arm64) to ref.
func PushIndex(t testing.TB, ref string) Index {
	t.Helper()
	tag := parseTag(t, ref)
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	var out Index
	for _, p := range []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}} {
		img := randomImage(t, p)
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &p},
		})
		out.Platforms = append(out.Platforms, describe(t, img, p))
	}
	if err := remote.WriteIndex(tag, idx); err != nil {
		t.Fatalf("imagetest: push index %s: %v", ref, err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatalf("imagetest: index digest: %v", err)
	}
	out.Digest = d.String()
	return out
}

func randomImage(t testing.TB, p v1.Platform) v1.Image {
	t.Helper()
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatalf("imagetest: random image: %v", err)
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatalf("imagetest: config: %v", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = p.OS, p.Architecture
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatalf("imagetest: set platform: %v", err)
	}
	return img
}

func describe(t testing.TB, img v1.Image, p v1.Platform) Image {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatalf("imagetest: digest: %v", err)
	}
	c, err := img.ConfigName()
	if err != nil {
		t.Fatalf("imagetest: config digest: %v", err)
	}
	return Image{Platform: p, Digest: d.String(), ConfigDigest: c.String()}
}

func parseTag(t testing.TB, ref string) name.Tag {
	t.Helper()
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatalf("imagetest: %q is not a tag reference: %v", ref, err)
	}
	return tag
}

func parseRepo(t testing.TB, repo string) name.Repository {
	t.Helper()
	r, err := name.NewRepository(repo)
	if err != nil {
		t.Fatalf("imagetest: %q is not a repository: %v", repo, err)
	}
	return r
}
