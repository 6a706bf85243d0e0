package resolve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	introspectionapi "github.com/containerd/containerd/api/services/introspection/v1"
	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// DefaultSnapshotter is containerd's CRI default, tried first.
const DefaultSnapshotter = "overlayfs"

// RepointWindow is how long after a record's target changed Bind refuses
// it: longer than the CRI plugin takes from reading the record to asking
// NRI (milliseconds, or the NRI queue's wait, which the gate keeps short).
const RepointWindow = 30 * time.Second

// Errors of Bind.
var (
	// ErrRootfsMismatch means the container's rootfs was not made from the
	// image that was checked.
	ErrRootfsMismatch = errors.New("the container's root filesystem was not made from the verified image")
	// ErrRepointed means the record changed too recently to tell which
	// target the container was made from.
	ErrRepointed = errors.New("containerd's image record changed while the container may have been being created")
)

// Bind checks that the container runs img, which Resolve found. Resolve
// reads containerd's image record when the hook runs, but the CRI plugin
// read it earlier, when the create began: a tag re-pointed in between (the
// tenant's own pull) would have the gate verify one image while the
// container runs another. Two checks close that:
//
//   - the layers: the CRI plugin prepares the rootfs before it asks NRI,
//     as a snapshot keyed by the container's ID whose parent is the chain
//     ID of the image config's layers (rootfs.diff_ids); that parent must
//     be img's config's chain (CheckRootfs);
//   - the rest of the config (entrypoint, env, user), which the runtime
//     has already turned into the container's spec and no snapshot
//     records: a record whose target changed within RepointWindow is
//     refused, for a retry to decide once the record is stable.
func (r *Resolver) Bind(ctx context.Context, containerID string, img Image) error {
	if !img.Repointed.IsZero() {
		if age := r.now().Sub(img.Repointed); age < RepointWindow {
			return fmt.Errorf("%w: %s was re-pointed to %s %s ago; refused until it is %s old, so that the check is about what the container runs (a retry then decides)",
				ErrRepointed, img.Name, img.Digest, age.Round(time.Millisecond), RepointWindow)
		}
	}
	return r.CheckRootfs(ctx, containerID, img.ConfigDigest)
}

// CheckRootfs checks that the container's rootfs snapshot is made of the
// layers of configDigest (see Bind). The key is the container's ID, which
// only the CRI plugin chooses.
//
// With user namespaces and a snapshotter that cannot map IDs, containerd
// prepares the rootfs on a chowned copy of the image's layers, named by a
// hash of the chain and the ID map. That is not followed: "the parent's
// parent is the chain" also holds for an image of the checked layers plus
// more of an attacker's, and the copy's name is containerd's internal
// detail. Such a container is refused here.
func (r *Resolver) CheckRootfs(ctx context.Context, containerID, configDigest string) error {
	if containerID == "" {
		return errors.New("the runtime sent no container ID, so its root filesystem cannot be checked")
	}
	return r.checkSnapshot(ctx, containerID, configDigest, snapshotCheck{
		what: "rootfs snapshot for container", mismatch: ErrRootfsMismatch,
		hint: "was the image's tag re-pointed while the container was created?",
	})
}

// snapshotCheck words checkSnapshot's errors for one kind of snapshot.
type snapshotCheck struct {
	what     string // "rootfs snapshot for container"
	mismatch error  // the error a wrong parent wraps
	hint     string // what a wrong parent likely means
}

// checkSnapshot checks that the snapshot key, in whichever of containerd's
// snapshotters holds it, sits directly on the layer chain of configDigest.
func (r *Resolver) checkSnapshot(ctx context.Context, key, configDigest string, c snapshotCheck) error {
	ctx = metadata.AppendToOutgoingContext(ctx, "containerd-namespace", r.namespace)
	want, err := r.chainID(ctx, configDigest)
	if err != nil {
		return err
	}
	info, snapshotter, err := r.snapshot(ctx, key, c.what)
	if err != nil {
		return err
	}
	if p := info.GetParent(); p != want {
		return fmt.Errorf("%w: its snapshot %s/%s has parent %q, the verified config %s has layers %s (%s)",
			c.mismatch, snapshotter, key, p, configDigest, want, c.hint)
	}
	return nil
}

// chainID reads the config from containerd's content store and returns the
// chain ID of its layers.
func (r *Resolver) chainID(ctx context.Context, configDigest string) (string, error) {
	raw, err := r.read(ctx, configDigest)
	if err != nil {
		return "", fmt.Errorf("image config %s: %w", configDigest, err)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return "", fmt.Errorf("image config %s: %w", configDigest, err)
	}
	if len(cfg.RootFS.DiffIDs) == 0 {
		return "", fmt.Errorf("image config %s lists no layers", configDigest)
	}
	for _, d := range cfg.RootFS.DiffIDs {
		if err := d.Validate(); err != nil {
			return "", fmt.Errorf("image config %s: layer %q: %w", configDigest, d, err)
		}
	}
	return identity.ChainID(cfg.RootFS.DiffIDs).String(), nil
}

// snapshot finds the snapshot key (a what, for errors). The CRI
// runtime's snapshotter (overlayfs unless configured otherwise) is tried
// first, then the others containerd has.
func (r *Resolver) snapshot(ctx context.Context, key, what string) (*snapshotsapi.Info, string, error) {
	names, err := r.snapshotters(ctx)
	if err != nil {
		return nil, "", err
	}
	for _, name := range names {
		resp, err := r.snapshots.Stat(ctx, &snapshotsapi.StatSnapshotRequest{Snapshotter: name, Key: key})
		switch {
		case err == nil:
			return resp.GetInfo(), name, nil
		case status.Code(err) != codes.NotFound:
			return nil, "", fmt.Errorf("containerd: snapshot %s/%s: %w", name, key, err)
		}
	}
	return nil, "", fmt.Errorf("containerd has no %s %s in any snapshotter (%v)", what, key, names)
}

// snapshotters lists containerd's snapshotters, DefaultSnapshotter first;
// the list is read once.
func (r *Resolver) snapshotters(ctx context.Context) ([]string, error) {
	r.snapMu.Lock()
	defer r.snapMu.Unlock()
	if r.snapNames != nil {
		return r.snapNames, nil
	}
	resp, err := r.introspection.Plugins(ctx, &introspectionapi.PluginsRequest{Filters: []string{"type==io.containerd.snapshotter.v1"}})
	if err != nil {
		return nil, fmt.Errorf("containerd: list snapshotters: %w", err)
	}
	names := []string{DefaultSnapshotter}
	for _, p := range resp.GetPlugins() {
		if p.GetInitErr() == nil && !slices.Contains(names, p.GetID()) {
			names = append(names, p.GetID())
		}
	}
	r.snapNames = names
	return names, nil
}

// snapshotState is the Resolver's cache of snapshotter names.
type snapshotState struct {
	snapMu    sync.Mutex
	snapNames []string
}
