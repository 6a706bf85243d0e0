package main

import (
	"io"
	"testing"

	"github.com/nri-image-verifier/nri-image-verifier/plugin"
)

// TestRunFlagsCRIStateDir: image volumes are found under --cri-state-dir;
// a form that could never prefix a mount source is a usage error, not a
// daemon that refuses every image volume.
func TestRunFlagsCRIStateDir(t *testing.T) {
	f, code := parseRunFlags([]string{"--policy", "p.yaml"}, io.Discard)
	if f == nil || f.plugin.CRIStateDir != plugin.DefaultCRIStateDir {
		t.Fatalf("default: flags %+v (exit %d), want CRI state dir %s", f, code, plugin.DefaultCRIStateDir)
	}
	f, _ = parseRunFlags([]string{"--cri-state-dir", "/run/k3s/containerd/io.containerd.grpc.v1.cri"}, io.Discard)
	if f == nil || f.plugin.CRIStateDir != "/run/k3s/containerd/io.containerd.grpc.v1.cri" {
		t.Fatalf("flags %+v, want the given CRI state dir", f)
	}
	for _, bad := range []string{"run/containerd", "/run/containerd/", "/run/../run/containerd", ""} {
		if f, code := parseRunFlags([]string{"--cri-state-dir", bad}, io.Discard); f != nil || code != exitUsage {
			t.Errorf("--cri-state-dir %q: flags %+v, exit %d; want a usage error", bad, f, code)
		}
	}
}
