package resolve

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	introspectionapi "github.com/containerd/containerd/api/services/introspection/v1"
	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

type snapshotsSrv struct {
	snapshotsapi.UnimplementedSnapshotsServer
	*store
}

func (s snapshotsSrv) Stat(_ context.Context, req *snapshotsapi.StatSnapshotRequest) (*snapshotsapi.StatSnapshotResponse, error) {
	if info, ok := s.snapshots[req.GetSnapshotter()+"/"+req.GetKey()]; ok {
		return &snapshotsapi.StatSnapshotResponse{Info: info}, nil
	}
	return nil, status.Errorf(codes.NotFound, "snapshot %s: not found", req.GetKey())
}

// introspectionSrv lists overlayfs, native and a snapshotter that failed
// to start.
type introspectionSrv struct {
	introspectionapi.UnimplementedIntrospectionServer
}

func (introspectionSrv) Plugins(context.Context, *introspectionapi.PluginsRequest) (*introspectionapi.PluginsResponse, error) {
	return &introspectionapi.PluginsResponse{Plugins: []*introspectionapi.Plugin{
		{Type: "io.containerd.snapshotter.v1", ID: "native"},
		{Type: "io.containerd.snapshotter.v1", ID: "overlayfs"},
		{Type: "io.containerd.snapshotter.v1", ID: "zfs", InitErr: &rpcstatus.Status{Message: "no zfs"}},
	}}, nil
}

func imageConfig(layers ...string) (map[string]any, string) {
	var ds []digest.Digest
	for _, l := range layers {
		ds = append(ds, digest.FromString(l))
	}
	return map[string]any{"architecture": "amd64", "os": "linux",
		"rootfs": map[string]any{"type": "layers", "diff_ids": ds}}, identity.ChainID(ds).String()
}

// The fallback reads the image record when the hook runs, but the runtime
// made the rootfs from the record it read earlier. CheckRootfs binds the
// two: the container's snapshot must sit on the verified config's layers.
func TestCheckRootfs(t *testing.T) {
	s := &store{images: map[string]*imagesapi.Image{}, content: map[string][]byte{}, snapshots: map[string]*snapshotsapi.Info{}}
	signedCfg, signedChain := imageConfig("signed layer")
	_, evilChain := imageConfig("evil layer")
	signed := s.put(signedCfg)
	empty := s.put(map[string]any{"rootfs": map[string]any{"type": "layers"}})
	s.snapshots["overlayfs/ok"] = &snapshotsapi.Info{Name: "ok", Parent: signedChain}
	s.snapshots["native/elsewhere"] = &snapshotsapi.Info{Name: "elsewhere", Parent: signedChain}
	s.snapshots["overlayfs/swapped"] = &snapshotsapi.Info{Name: "swapped", Parent: evilChain}
	// The checked layers plus one more of an attacker's: the rootfs
	// sits on that layer, whose parent is the checked chain. (A
	// user-namespaced copy of the layers looks the same and is refused too.)
	s.snapshots["overlayfs/extra-layer"] = &snapshotsapi.Info{Name: "extra-layer", Parent: signedChain}
	s.snapshots["overlayfs/plus-one"] = &snapshotsapi.Info{Name: "plus-one", Parent: "extra-layer"}
	r := serve(t, s)
	ctx := context.Background()

	for _, id := range []string{"ok", "elsewhere"} {
		if err := r.CheckRootfs(ctx, id, signed); err != nil {
			t.Errorf("%s: %v, want the rootfs accepted", id, err)
		}
	}
	err := r.CheckRootfs(ctx, "swapped", signed)
	if !errors.Is(err, ErrRootfsMismatch) || !strings.Contains(err.Error(), evilChain) || !strings.Contains(err.Error(), "re-pointed") {
		t.Errorf("swapped rootfs: %v, want a mismatch naming the snapshot's parent", err)
	}
	if err := r.CheckRootfs(ctx, "plus-one", signed); !errors.Is(err, ErrRootfsMismatch) {
		t.Errorf("checked layers plus one: %v, want a mismatch", err)
	}
	for name, tc := range map[string]struct{ id, cfg, want string }{
		"no snapshot":         {"gone", signed, "no rootfs snapshot for container gone in any snapshotter ([overlayfs native])"},
		"no container ID":     {"", signed, "no container ID"},
		"config not there":    {"ok", "sha256:" + strings.Repeat("9", 64), "image config"},
		"config lists none":   {"ok", empty, "lists no layers"},
		"not a sha256 digest": {"ok", "md5:abc", "only sha256"},
	} {
		if err := r.CheckRootfs(ctx, tc.id, tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", name, err, tc.want)
		}
	}
}

// A record whose target changed moments ago may have changed while the
// container was created, after the runtime read it: its config (the
// container's entrypoint, env, user), which no snapshot records, may be
// another image's. Bind refuses it until it is RepointWindow old.
func TestBindRepointed(t *testing.T) {
	s := &store{images: map[string]*imagesapi.Image{}, content: map[string][]byte{}, snapshots: map[string]*snapshotsapi.Info{}}
	cfg, chain := imageConfig("layer")
	cfgDigest := s.put(cfg)
	m := s.put(manifest(cfgDigest))
	s.snapshots["overlayfs/c1"] = &snapshotsapi.Info{Name: "c1", Parent: chain}
	now := time.Unix(10000, 0)
	created := timestamppb.New(now.Add(-time.Hour))
	for name, updated := range map[string]time.Time{
		"127.0.0.1:5000/never:v1":  now.Add(-time.Hour),
		"127.0.0.1:5000/moved:v1":  now.Add(-5 * time.Second),
		"127.0.0.1:5000/stable:v1": now.Add(-RepointWindow - time.Second),
	} {
		s.images[name] = &imagesapi.Image{Name: name, Target: &types.Descriptor{MediaType: "application/vnd.oci.image.manifest.v1+json", Digest: m},
			CreatedAt: created, UpdatedAt: timestamppb.New(updated)}
	}
	r := serve(t, s)
	r.now = func() time.Time { return now }
	ctx := context.Background()
	for ref, want := range map[string]string{"127.0.0.1:5000/never:v1": "", "127.0.0.1:5000/stable:v1": "", "127.0.0.1:5000/moved:v1": "re-pointed to " + m + " 5s ago"} {
		img, err := r.Resolve(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		err = r.Bind(ctx, "c1", img)
		if want == "" && err != nil {
			t.Errorf("%s: %v, want it bound", ref, err)
		}
		if want != "" && (!errors.Is(err, ErrRepointed) || !strings.Contains(err.Error(), want)) {
			t.Errorf("%s: %v, want ErrRepointed saying %q", ref, err, want)
		}
	}
}
