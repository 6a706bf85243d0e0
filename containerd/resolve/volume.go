package resolve

import (
	"context"
	"errors"
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
	return r.checkSnapshot(ctx, dir, configDigest, snapshotCheck{
		what: "snapshot for the image volume", mismatch: ErrVolumeMismatch,
		hint: "was the image's tag re-pointed while the volume was mounted?",
	})
}
