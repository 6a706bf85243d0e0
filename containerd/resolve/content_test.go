package resolve

import (
	"context"
	"strings"
	"testing"

	imagesapi "github.com/containerd/containerd/api/services/images/v1"
)

// Content serves the chain check: content by digest, checked.
func TestContent(t *testing.T) {
	s := &store{images: map[string]*imagesapi.Image{}, content: map[string][]byte{}}
	good := s.put(manifest("sha256:" + strings.Repeat("c", 64)))
	r := serve(t, s)
	b, err := r.Content(context.Background(), good)
	if err != nil || !strings.Contains(string(b), "config") {
		t.Fatalf("Content = %q, %v", b, err)
	}
	bad := "sha256:" + strings.Repeat("f", 64)
	s.content[bad] = b // content that does not hash to its digest
	if _, err := r.Content(context.Background(), bad); err == nil {
		t.Fatal("content not matching its digest was returned")
	}
	if _, err := r.Content(context.Background(), "sha256:"+strings.Repeat("0", 64)); err == nil {
		t.Fatal("missing content was returned")
	}
}
