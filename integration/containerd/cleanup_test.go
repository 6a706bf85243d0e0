package containerd

import (
	"context"
	"testing"
	"time"

	"github.com/nri-image-verifier/nri-image-verifier/internal/containerdtest"
)

// A run's directory. Under /tmp, not t.TempDir or $TMPDIR: unix socket
// paths have a 108-byte limit, containerd's shim socket dir one of 42.
const (
	runDirParent = "/tmp"
	runDirPrefix = "niv-e2e-"
)

// teardown stops everything by PID and removes what containerd left:
// containers, shims, mounts, cgroups, then the directory. Pods are
// removed through CRI first, so that normally containerd cleans up itself.
func (w *world) teardown(t *testing.T) {
	if t.Failed() {
		if w.plugin != nil {
			t.Logf("nri-image-verifier's log (last lines):\n%s", w.plugin.Tail(30))
		}
		if w.containerd != nil {
			t.Logf("containerd's log (last lines):\n%s", w.containerd.Tail(30))
		}
	}
	w.plugin.Stop()
	if w.cri != nil {
		if w.containerd != nil && !w.containerd.Exited() {
			w.removePods(t)
		}
		w.cri.Close()
	}
	w.containerd.Stop(10 * time.Second)
	if err := containerdtest.CleanDir(w.dir); err != nil {
		t.Error(err)
	}
}

func (w *world) removePods(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := w.cri.RemovePods(ctx); err != nil {
		t.Logf("teardown: %v", err)
	}
}
