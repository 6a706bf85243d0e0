package registry

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/nri-image-verifier/nri-image-verifier/internal/faulttest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
)

func TestClassify(t *testing.T) {
	hex := strings.Repeat("ab", 32)
	for _, c := range []struct {
		path   string
		marked bool
		want   sizeClass
		kind   string
	}{
		{"/v2/", false, classOther, ""},
		{"/token", false, classOther, ""},
		{"/v2/app/manifests/v1", false, classManifest, "manifest"},
		{"/v2/org/app/manifests/sha256:" + hex, false, classManifest, "manifest"},
		{"/v2/org/app/manifests/sha256:" + hex, true, classSignature, "signature manifest"},
		{"/v2/app/manifests/sha256-" + hex + ".sig", false, classSignature, "signature manifest"},
		{"/v2/app/manifests/sha256-" + hex + ".att", false, classSignature, "signature manifest"},
		{"/v2/app/manifests/sha256-" + hex + ".sbom", false, classSignature, "signature manifest"},
		{"/v2/app/manifests/sha256-" + hex, false, classSignature, "referrer list"},
		{"/v2/app/manifests/sha256-" + hex[:10] + ".sig", false, classManifest, "manifest"},
		{"/v2/app/manifests/sha256-" + hex + ".sigx", false, classManifest, "manifest"},
		{"/v2/app/referrers/sha256:" + hex, false, classSignature, "referrer list"},
		{"/v2/app/blobs/sha256:" + hex, false, classBlob, "blob"},
		{"/v2/app/blobs/sha256:" + hex, true, classSignature, "signature blob"},
		{"/v2/app/tags/list", false, classManifest, "tag list"},
	} {
		got, kind := classify(c.path, c.marked)
		if got != c.want || kind != c.kind {
			t.Errorf("classify(%q, %v) = %d %q, want %d %q", c.path, c.marked, got, kind, c.want, c.kind)
		}
	}
}

// hostile serves n bytes of filler (chunked, so that only the read cap
// can stop it) to every GET whose path contains one of the parts it is
// armed with, and the real registry otherwise.
func hostile(t *testing.T, n int64) (*hostileRegistry, string) {
	h := &hostileRegistry{}
	srv := imagetest.StartRegistryServer(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if p := h.part.Load(); p != nil && r.Method == http.MethodGet && strings.Contains(r.URL.Path, *p) {
				h.hits.Add(1)
				faulttest.Huge(n, false, string(types.OCIImageIndex))(w, r, next)
				return
			}
			next.ServeHTTP(w, r)
		})
	})
	return h, strings.TrimPrefix(srv.URL, "http://")
}

type hostileRegistry struct {
	part atomic.Pointer[string]
	hits atomic.Int64
}

func (h *hostileRegistry) arm(part string) { h.part.Store(&part) }

// The review's attack: signature manifests and referrer lists just under
// the old 4 MiB manifest cap. Each is refused at the signature cap, and
// image manifests at the image manifest cap, while an attestation blob of
// the same size still passes.
func TestSignatureCaps(t *testing.T) {
	h, host := hostile(t, 4<<20-1)
	repo := mustRepo(t, host+"/app")
	img := imagetest.PushImageConfig(t, repo.String()+":v1")
	d := repo.Digest(img.Digest)
	ctx := context.Background()
	sigCap := "size cap of 262144 bytes"
	tagOf := strings.Replace(img.Digest, ":", "-", 1)

	for _, c := range []struct {
		part, kind string
		do         func(*Client) error
	}{
		{tagOf + ".sig", "signature manifest", func(c *Client) error { return second(c.Manifest(ctx, repo.Tag(tagOf+".sig"))) }},
		{tagOf + ".att", "signature manifest", func(c *Client) error { return second(c.Manifest(ctx, repo.Tag(tagOf+".att"))) }},
		{"/referrers/", "referrer list", func(c *Client) error { return second(c.Referrers(ctx, d, "x")) }},
		{"/manifests/" + img.Digest, "signature manifest", func(c *Client) error { return second(c.SignatureManifest(ctx, d)) }},
		{"/blobs/", "signature blob", func(c *Client) error { return second(c.SignatureBlob(ctx, repo.Digest(img.ConfigDigest))) }},
		{"/manifests/" + img.Digest, "manifest", func(c *Client) error { return second(c.Manifest(ctx, d)) }},
	} {
		h.arm(c.part)
		limit := sigCap
		if c.kind == "manifest" {
			limit = "size cap of 1048576 bytes"
		}
		err := c.do(newClient(t, Options{}))
		if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), c.kind+" "+limit) {
			t.Errorf("%s: %v, want the %s %s", c.part, err, c.kind, limit)
		}
	}
	// An attestation is a plain blob: under the 4 MiB cap it is read
	// whole (and then fails its digest check, being filler).
	h.arm("/blobs/")
	if err := second(newClient(t, Options{}).Blob(ctx, repo.Digest(img.ConfigDigest))); err == nil || errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "after reading 4194303 bytes") {
		t.Errorf("4 MiB-1 blob: %v, want it read and found not to match", err)
	}
}

// Where the registry lacks the referrers API, the list is the referrers
// tag sha256-<hex>: the same cap holds.
func TestReferrersTagFallbackCap(t *testing.T) {
	h := &hostileRegistry{}
	srv := imagetest.StartRegistryServer(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch {
			case strings.Contains(r.URL.Path, "/referrers/"):
				http.NotFound(w, r)
			case strings.Contains(r.URL.Path, "/manifests/sha256-"):
				h.hits.Add(1)
				faulttest.Huge(1<<20, false, string(types.OCIImageIndex))(w, r, next)
			default:
				next.ServeHTTP(w, r)
			}
		})
	})
	repo := mustRepo(t, strings.TrimPrefix(srv.URL, "http://")+"/app")
	d := imagetest.PushImage(t, repo.String()+":v1")
	_, err := newClient(t, Options{}).Referrers(context.Background(), repo.Digest(d), "x")
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "referrer list size cap of 262144 bytes") || h.hits.Load() == 0 {
		t.Fatalf("fallback tag of 1 MiB (%d hits): %v", h.hits.Load(), err)
	}
}
