package resolve

import (
	"context"
	"errors"
	"strings"
	"testing"

	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
)

// TestCheckVolume: an image volume's snapshot (keyed by its folder) must
// sit on the layers of the config that was verified; a tag re-pointed
// while containerd mounted it leaves another image's layers there.
func TestCheckVolume(t *testing.T) {
	s := &store{images: map[string]*imagesapi.Image{}, content: map[string][]byte{}, snapshots: map[string]*snapshotsapi.Info{}}
	signedCfg, signedChain := imageConfig("tools")
	_, evilChain := imageConfig("payload")
	cfg := s.put(signedCfg)
	const dir = "/run/containerd/io.containerd.grpc.v1.cri/image-volumes/pod/" + "ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12"
	s.snapshots["native/"+dir] = &snapshotsapi.Info{Name: dir, Parent: signedChain}
	s.snapshots["overlayfs/"+dir+"-swapped"] = &snapshotsapi.Info{Name: dir + "-swapped", Parent: evilChain}
	r := serve(t, s)
	ctx := context.Background()

	if err := r.CheckVolume(ctx, dir, cfg); err != nil {
		t.Errorf("the volume made of the verified layers: %v", err)
	}
	if err := r.CheckVolume(ctx, dir+"-swapped", cfg); !errors.Is(err, ErrVolumeMismatch) {
		t.Errorf("the volume made of other layers: %v, want ErrVolumeMismatch", err)
	}
	if err := r.CheckVolume(ctx, dir+"-missing", cfg); err == nil || !strings.Contains(err.Error(), "no snapshot") {
		t.Errorf("a volume without a snapshot: %v", err)
	}
	if err := r.CheckVolume(ctx, dir, "sha256:"+strings.Repeat("0", 64)); err == nil {
		t.Error("a config containerd does not hold was accepted")
	}
}
