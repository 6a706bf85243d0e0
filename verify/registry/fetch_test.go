package registry

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"testing/iotest"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
)

func newClient(t testing.TB, opts Options) *Client {
	t.Helper()
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustRepo(t testing.TB, s string) name.Repository {
	t.Helper()
	r, err := name.NewRepository(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestManifestBlobResolve(t *testing.T) {
	host := imagetest.StartRegistry(t)
	repo := mustRepo(t, host+"/app")
	img := imagetest.PushImageConfig(t, repo.String()+":v1")
	c := newClient(t, Options{})
	ctx := context.Background()

	m, err := c.Manifest(ctx, repo.Digest(img.Digest))
	if err != nil {
		t.Fatal(err)
	}
	if m.Digest.String() != img.Digest || m.MediaType != types.OCIManifestSchema1 {
		t.Fatalf("manifest %s %s, want %s %s", m.Digest, m.MediaType, img.Digest, types.OCIManifestSchema1)
	}
	byTag, err := c.Manifest(ctx, repo.Tag("v1"))
	if err != nil || byTag.Digest.String() != img.Digest {
		t.Fatalf("by tag: %v, %v", byTag, err)
	}
	cfg, err := c.Blob(ctx, repo.Digest(img.ConfigDigest))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cfg), `"architecture":"amd64"`) {
		t.Fatalf("config %s", cfg)
	}
	d, err := c.Resolve(ctx, repo.Tag("v1"))
	if err != nil || d.String() != img.Digest {
		t.Fatalf("resolve: %s, %v", d, err)
	}
}

func TestNotFoundIsAnAnswer(t *testing.T) {
	srv := imagetest.StartRegistryServer(t, nil)
	repo := mustRepo(t, strings.TrimPrefix(srv.URL, "http://")+"/app")
	img := imagetest.PushImageConfig(t, repo.String()+":v1")
	c := newClient(t, Options{})
	ctx := context.Background()
	missing := "sha256:" + strings.Repeat("0", 64)

	for what, err := range map[string]error{
		"tag":      second(c.Manifest(ctx, repo.Tag("sha256-"+strings.Repeat("0", 64)+".sig"))),
		"manifest": second(c.Manifest(ctx, repo.Digest(missing))),
		"blob":     second(c.Blob(ctx, repo.Digest(missing))),
		"repo":     second(c.Manifest(ctx, mustRepo(t, repo.RegistryStr()+"/nothing").Digest(img.Digest))),
	} {
		if !IsNotFound(err) {
			t.Errorf("missing %s: %v, want not found", what, err)
		}
	}

	srv.Close()
	_, err := c.Manifest(ctx, repo.Digest(img.Digest))
	if err == nil || IsNotFound(err) || IsDefinitive(err) {
		t.Fatalf("registry down: %v, want a transient error", err)
	}
}

func second[T any](_ T, err error) error { return err }

// A registry that serves other content under a digest is caught.
func TestDigestMismatch(t *testing.T) {
	var other atomic.Pointer[[]byte]
	srv := imagetest.StartRegistryServer(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if body := other.Load(); body != nil && r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/sha256:") {
				w.Header().Set("Content-Type", string(types.OCIManifestSchema1))
				w.Write(*body)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	repo := mustRepo(t, strings.TrimPrefix(srv.URL, "http://")+"/app")
	img := imagetest.PushImageConfig(t, repo.String()+":v1")
	c := newClient(t, Options{})
	forged := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}`)
	other.Store(&forged)

	if _, err := c.Manifest(context.Background(), repo.Digest(img.Digest)); err == nil || IsNotFound(err) {
		t.Errorf("manifest with other content: %v, want a mismatch error", err)
	}
	if _, err := c.Blob(context.Background(), repo.Digest(img.ConfigDigest)); err == nil || IsNotFound(err) {
		t.Errorf("blob with other content: %v, want a mismatch error", err)
	}
}

func TestReferrersFilter(t *testing.T) {
	const bundle = "application/vnd.dev.sigstore.bundle.v0.3+json"
	host := imagetest.StartRegistry(t)
	repo := mustRepo(t, host+"/app")
	d := imagetest.PushImage(t, repo.String()+":v1")
	c := newClient(t, Options{})

	none, err := c.Referrers(context.Background(), repo.Digest(d), bundle)
	if err != nil || len(none) != 0 {
		t.Fatalf("no referrers yet: %v, %v", none, err)
	}
	imagetest.SignBundle(t, repo.String(), d, imagetest.NewSigner(t, imagetest.ECDSAP256), imagetest.SignOptions{})
	got, err := c.Referrers(context.Background(), repo.Digest(d), bundle)
	if err != nil || len(got) != 1 {
		t.Fatalf("referrers: %v, %v", got, err)
	}

	// What a registry lists under which artifactType.
	srv := imagetest.StartRegistryServer(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !strings.Contains(r.URL.Path, "/referrers/") {
				h.ServeHTTP(w, r)
				return
			}
			w.Header().Set("Content-Type", string(types.OCIImageIndex))
			w.Write([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[` +
				`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:` + strings.Repeat("1", 64) + `","size":1,"artifactType":"` + bundle + `"},` +
				`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:` + strings.Repeat("2", 64) + `","size":1,"artifactType":"application/vnd.oci.empty.v1+json"},` +
				`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:` + strings.Repeat("3", 64) + `","size":1,"artifactType":"application/spdx+json"}]}`))
		})
	})
	repo2 := mustRepo(t, strings.TrimPrefix(srv.URL, "http://")+"/app")
	got, err = c.Referrers(context.Background(), repo2.Digest(d), bundle)
	if err != nil {
		t.Fatal(err)
	}
	var digests []string
	for _, g := range got {
		digests = append(digests, g.Digest.Hex[:1])
	}
	if strings.Join(digests, ",") != "1,2" {
		t.Fatalf("kept %v, want the bundle and the empty-typed entries", digests)
	}
}

func TestOptionsDefaults(t *testing.T) {
	o := newClient(t, Options{}).Limits()
	if o.MaxManifestBytes != 1<<20 || o.MaxSignatureBytes != 256<<10 || o.MaxBlobBytes != 4<<20 || o.MaxSignatures != 32 || o.MaxDescriptors != 128 || o.BodyBudget != 32<<20 || o.Timeout <= 0 || o.Keychain == nil || o.Transport == nil {
		t.Fatalf("defaults: %+v", o)
	}
}

// A list may always hold as many entries as are examined.
func TestMaxDescriptorsNotBelowMaxSignatures(t *testing.T) {
	if o := newClient(t, Options{MaxSignatures: 200, MaxDescriptors: 10}).Limits(); o.MaxDescriptors != 200 {
		t.Fatalf("MaxDescriptors %d, want MaxSignatures' 200", o.MaxDescriptors)
	}
}

func TestReadAll(t *testing.T) {
	for _, n := range []int{0, 1, readChunk - 1, readChunk, readChunk + 1, 5*readChunk + 7} {
		want := bytes.Repeat([]byte{'a', 'b', 'c'}, n/3+1)[:n]
		got, err := readAll(iotest.OneByteReader(bytes.NewReader(want)))
		if err != nil || !bytes.Equal(got, want) || cap(got) != n {
			t.Errorf("%d bytes: got %d (cap %d), %v", n, len(got), cap(got), err)
		}
	}
	broken := io.MultiReader(strings.NewReader("partial"), iotest.ErrReader(io.ErrClosedPipe))
	if _, err := readAll(broken); !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("broken body: %v", err)
	}
}
