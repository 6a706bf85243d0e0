package resolve

import (
	"context"
	"fmt"
	"strings"
	"testing"

	imagesapi "github.com/containerd/containerd/api/services/images/v1"
)

// TestImagesOf: an image volume's digest gets every name containerd holds
// for it, in containerd's spelling, with the config digest for this
// platform; the ID record names no repository and is left out.
func TestImagesOf(t *testing.T) {
	s := &store{images: map[string]*imagesapi.Image{}, content: map[string][]byte{}}
	const mt = "application/vnd.oci.image.manifest.v1+json"
	cfg := "sha256:" + strings.Repeat("c", 64)
	tools := s.put(manifest(cfg))
	s.record("127.0.0.1:5000/tools:v1", mt, tools)
	s.record("127.0.0.1:5000/tools@"+tools, mt, tools)
	s.record("EVIL.io/look-alike:1", mt, tools)
	s.record(cfg, mt, tools)
	other := s.put(manifest("sha256:" + strings.Repeat("d", 64)))
	s.record("127.0.0.1:5000/other:v1", mt, other)
	r := serve(t, s)

	got, err := r.ImagesOf(context.Background(), tools)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, img := range got {
		if img.Digest != tools || img.ConfigDigest != cfg {
			t.Errorf("image %+v, want digest %s config %s", img, tools, cfg)
		}
		names[img.Name] = true
	}
	want := "map[127.0.0.1:5000/tools:v1:true 127.0.0.1:5000/tools@" + tools + ":true EVIL.io/look-alike:1:true]"
	if fmt.Sprint(names) != want {
		t.Errorf("names %v, want %s", names, want)
	}

	if got, err := r.ImagesOf(context.Background(), "sha256:"+strings.Repeat("9", 64)); err != nil || len(got) != 0 {
		t.Errorf("unknown digest: %+v, %v; want none, no error", got, err)
	}
	// Nothing but a sha256 digest reaches containerd's filter syntax.
	for _, bad := range []string{"", "sha256:" + strings.ToUpper(strings.Repeat("a", 64)), tools + ",name==x", "sha512:" + strings.Repeat("a", 128)} {
		if _, err := r.ImagesOf(context.Background(), bad); err == nil {
			t.Errorf("ImagesOf(%q) accepted", bad)
		}
	}
}
