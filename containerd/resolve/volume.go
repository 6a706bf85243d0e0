package resolve

import (
	"context"
	"errors"
	"fmt"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// ErrVolumeMismatch means an image volume's file system was not made from
// the image that was checked.
var ErrVolumeMismatch = errors.New("the image volume's file system was not made from the verified image")

// CheckVolume checks that the image volume mounted from dir is made of the
// layers of configDigest. containerd (v2.4.2, mutateImageMount) names the
// volume's folder after the target digest of one read of the image record
// and unpacks the image of a second read: a tag re-pointed in between
// would mount another image under the checked digest's name. The folder is
// also the key of the volume's snapshot, prepared on the chain ID of the
// unpacked image's layers, so that parent must be configDigest's chain.
func (r *Resolver) CheckVolume(ctx context.Context, dir, configDigest string) error {
	ctx = metadata.AppendToOutgoingContext(ctx, "containerd-namespace", r.namespace)
	want, err := r.chainID(ctx, configDigest)
	if err != nil {
		return err
	}
	names, err := r.snapshotters(ctx)
	if err != nil {
		return err
	}
	for _, name := range names {
		resp, err := r.snapshots.Stat(ctx, &snapshotsapi.StatSnapshotRequest{Snapshotter: name, Key: dir})
		switch {
		case status.Code(err) == codes.NotFound:
			continue
		case err != nil:
			return fmt.Errorf("containerd: snapshot %s/%s: %w", name, dir, err)
		}
		if p := resp.GetInfo().GetParent(); p != want {
			return fmt.Errorf("%w: its snapshot %s/%s has parent %q, the verified config %s has layers %s (was the image's tag re-pointed while the volume was mounted?)",
				ErrVolumeMismatch, name, dir, p, configDigest, want)
		}
		return nil
	}
	return fmt.Errorf("containerd has no snapshot for the image volume %s in any snapshotter (%v)", dir, names)
}
