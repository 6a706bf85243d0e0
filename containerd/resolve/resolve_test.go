package resolve

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	contentapi "github.com/containerd/containerd/api/services/content/v1"
	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	introspectionapi "github.com/containerd/containerd/api/services/introspection/v1"
	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// store is a small stand-in for containerd's image and content services:
// enough to test name and ID resolution here. The real containerd is
// exercised by the end-to-end suite.
type store struct {
	images    map[string]*imagesapi.Image
	content   map[string][]byte
	snapshots map[string]*snapshotsapi.Info // by snapshotter/key
	mu        sync.Mutex
	ns        []string // namespaces requests came with
}

type imagesSrv struct {
	imagesapi.UnimplementedImagesServer
	*store
}

type contentSrv struct {
	contentapi.UnimplementedContentServer
	*store
}

func (s imagesSrv) Get(ctx context.Context, req *imagesapi.GetImageRequest) (*imagesapi.GetImageResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	s.mu.Lock()
	s.ns = append(s.ns, md.Get("containerd-namespace")...)
	s.mu.Unlock()
	if img, ok := s.images[req.GetName()]; ok {
		return &imagesapi.GetImageResponse{Image: img}, nil
	}
	return nil, status.Errorf(codes.NotFound, "image %q: not found", req.GetName())
}

func (s imagesSrv) List(_ context.Context, req *imagesapi.ListImagesRequest) (*imagesapi.ListImagesResponse, error) {
	want := strings.TrimPrefix(req.GetFilters()[0], "target.digest==")
	var out []*imagesapi.Image
	for _, img := range s.images {
		if img.GetTarget().GetDigest() == want {
			out = append(out, img)
		}
	}
	return &imagesapi.ListImagesResponse{Images: out}, nil
}

func (s contentSrv) Read(req *contentapi.ReadContentRequest, srv contentapi.Content_ReadServer) error {
	b, ok := s.content[req.GetDigest()]
	if !ok {
		return status.Errorf(codes.NotFound, "content %s: not found", req.GetDigest())
	}
	// Two chunks, as a real stream may send.
	half := len(b) / 2
	if err := srv.Send(&contentapi.ReadContentResponse{Data: b[:half]}); err != nil {
		return err
	}
	return srv.Send(&contentapi.ReadContentResponse{Offset: int64(half), Data: b[half:]})
}

func (s *store) put(v any) string {
	b, _ := json.Marshal(v)
	d := fmt.Sprintf("sha256:%x", sha256.Sum256(b))
	s.content[d] = b
	return d
}

func (s *store) record(name, mediaType, digest string) {
	s.images[name] = &imagesapi.Image{Name: name, Target: &types.Descriptor{MediaType: mediaType, Digest: digest}}
}

func manifest(config string) map[string]any {
	return map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
		"layers": []any{}}
}

func serve(t *testing.T, s *store) *Resolver {
	t.Helper()
	dir, err := os.MkdirTemp("", "resolve-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "containerd.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	imagesapi.RegisterImagesServer(srv, imagesSrv{store: s})
	contentapi.RegisterContentServer(srv, contentSrv{store: s})
	snapshotsapi.RegisterSnapshotsServer(srv, snapshotsSrv{store: s})
	introspectionapi.RegisterIntrospectionServer(srv, introspectionSrv{})
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	r, err := New(sock, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestResolve(t *testing.T) {
	s := &store{images: map[string]*imagesapi.Image{}, content: map[string][]byte{}}
	const mt = "application/vnd.oci.image.manifest.v1+json"
	cfg := "sha256:" + strings.Repeat("c", 64)
	single := s.put(manifest(cfg))
	s.record("docker.io/library/redis:7", mt, single)
	s.record("docker.io/library/redis@"+single, mt, single)
	s.record(cfg, mt, single)

	// A multi-arch index: this node's platform and another.
	here, other := "sha256:"+strings.Repeat("1", 64), "sha256:"+strings.Repeat("2", 64)
	hereM, otherM := s.put(manifest(here)), s.put(manifest(other))
	otherArch := "arm64"
	if runtime.GOARCH == "arm64" {
		otherArch = "amd64"
	}
	index := s.put(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
		"manifests": []any{
			map[string]any{"mediaType": mt, "digest": otherM, "size": 1, "platform": map[string]string{"os": "linux", "architecture": otherArch}},
			map[string]any{"mediaType": mt, "digest": hereM, "size": 1, "platform": map[string]string{"os": runtime.GOOS, "architecture": runtime.GOARCH}},
		}})
	s.record("127.0.0.1:5000/multi:v1", "application/vnd.oci.image.index.v1+json", index)

	// Known only by ID: its tag moved away.
	lonelyCfg := "sha256:" + strings.Repeat("d", 64)
	lonely := s.put(manifest(lonelyCfg))
	s.record(lonelyCfg, mt, lonely)

	// Tampered content under a digest.
	badCfg := "sha256:" + strings.Repeat("e", 64)
	bad := s.put(manifest(badCfg))
	s.content[bad] = []byte(`{"config":{"digest":"sha256:` + strings.Repeat("f", 64) + `"}}`)
	s.record("127.0.0.1:5000/bad:v1", mt, bad)

	// Two records whose names differ only in the host's case, as containerd
	// keeps them: a copy of a signed image and an unsigned one.
	copyCfg, unsignedCfg := "sha256:"+strings.Repeat("a", 64), "sha256:"+strings.Repeat("b", 64)
	signedCopy, unsigned := s.put(manifest(copyCfg)), s.put(manifest(unsignedCfg))
	s.record("evil.io/x:1", mt, signedCopy)
	s.record("EVIL.io/x:1", mt, unsigned)

	r := serve(t, s)
	for _, tc := range []struct {
		ref  string
		want Image
		err  string
	}{
		{"redis:7", Image{Name: "docker.io/library/redis:7", Digest: single, ConfigDigest: cfg}, ""},
		{"docker.io/library/redis@" + single, Image{Name: "docker.io/library/redis@" + single, Digest: single, ConfigDigest: cfg}, ""},
		{cfg, Image{Name: "docker.io/library/redis:7", Digest: single, ConfigDigest: cfg}, ""},
		{strings.TrimPrefix(cfg, "sha256:"), Image{Name: "docker.io/library/redis:7", Digest: single, ConfigDigest: cfg}, ""},
		{"127.0.0.1:5000/multi:v1", Image{Name: "127.0.0.1:5000/multi:v1", Digest: index, ConfigDigest: here}, ""},
		{lonelyCfg, Image{}, "only by its ID"},
		{"redis:8", Image{}, "has no image"},
		{"127.0.0.1:5000/bad:v1", Image{}, "does not match its digest"},
		{"Not A Ref!", Image{}, "Not A Ref!"},
		// containerd files "name:tag@digest" as "name@digest", and the tag,
		// which nobody checked, must not choose the rule.
		{"redis:7@" + single, Image{Name: "docker.io/library/redis@" + single, Digest: single, ConfigDigest: cfg}, ""},
		{"redis:legacy-1@" + single, Image{Name: "docker.io/library/redis@" + single, Digest: single, ConfigDigest: cfg}, ""},
		// Each spelling gets its own record's digests, never the other's.
		{"EVIL.io/x:1", Image{Name: "evil.io/x:1", Digest: unsigned, ConfigDigest: unsignedCfg}, ""},
		{"evil.io/x:1", Image{Name: "evil.io/x:1", Digest: signedCopy, ConfigDigest: copyCfg}, ""},
		{"Evil.io/x:1", Image{}, "has no image"},
	} {
		t.Run(tc.ref, func(t *testing.T) {
			got, err := r.Resolve(context.Background(), tc.ref)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one containing %q (got %+v)", err, tc.err, got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ns := range s.ns {
		if ns != Namespace {
			t.Fatalf("request in namespace %q, want %q", ns, Namespace)
		}
	}
}

func TestResolveContainerdDown(t *testing.T) {
	r, err := New(filepath.Join(t.TempDir(), "absent.sock"), "")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Resolve(context.Background(), "redis:7"); err == nil || !strings.Contains(err.Error(), "containerd") {
		t.Fatalf("err = %v", err)
	}
}
