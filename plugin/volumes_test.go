package plugin

import (
	"errors"
	"path"
	"strings"
	"testing"

	"github.com/containerd/nri/pkg/api"
)

const (
	testHex     = "ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12"
	testSandbox = "pod-id"
	volBase     = DefaultCRIStateDir + "/image-volumes/"
)

// TestImageVolumes: image volume mounts are found by their source path
// under the CRI state dir, their digest read from it; anything with the
// shape of one that does not parse strictly is an error naming the mount.
func TestImageVolumes(t *testing.T) {
	ok := []struct {
		name, src string
		want      string // digest; "" = not an image volume
	}{
		{"image volume", volBase + testSandbox + "/" + testHex, "sha256:" + testHex},
		{"image volume with a subPath", volBase + testSandbox + "/" + testHex + "/bin/tools", "sha256:" + testHex},
		// kubelet passes a subPath as the pod wrote it and containerd
		// joins it uncleaned: these are the volume's content too.
		{"trailing slash", volBase + testSandbox + "/" + testHex + "/", "sha256:" + testHex},
		{"subPath with a trailing slash", volBase + testSandbox + "/" + testHex + "/d/", "sha256:" + testHex},
		{"subPath with a dot", volBase + testSandbox + "/" + testHex + "/./d", "sha256:" + testHex},
		{"subPath with a double slash", volBase + testSandbox + "/" + testHex + "/d//e", "sha256:" + testHex},
		{"hostPath", "/var/lib/data", ""},
		{"projected", "/var/lib/kubelet/pods/uid/volumes/kubernetes.io~projected/x", ""},
		{"no source", "", ""},
		{"sibling of image-volumes", DefaultCRIStateDir + "/image-volumes-old/" + testSandbox + "/" + testHex, ""},
		{"state dir's other folders", DefaultCRIStateDir + "/sandboxes/" + testSandbox + "/hostname", ""},
		{"image-volumes word, not the shape", "/data/image-volumes/readme", ""},
	}
	for _, tc := range ok {
		t.Run(tc.name, func(t *testing.T) {
			vols, err := ImageVolumes(DefaultCRIStateDir, testSandbox, []*api.Mount{{Destination: "/tools", Source: tc.src}})
			if err != nil {
				t.Fatalf("ImageVolumes(%q): %v", tc.src, err)
			}
			if tc.want == "" {
				if len(vols) != 0 {
					t.Fatalf("ImageVolumes(%q) = %+v, want none", tc.src, vols)
				}
				return
			}
			dir := volBase + testSandbox + "/" + strings.TrimPrefix(tc.want, "sha256:")
			if len(vols) != 1 || vols[0] != (ImageVolume{Destination: "/tools", Source: tc.src, Dir: dir, Digest: tc.want}) {
				t.Fatalf("ImageVolumes(%q) = %+v, want digest %s at /tools", tc.src, vols, tc.want)
			}
		})
	}

	bad := []struct{ name, src, why string }{
		{"upper-case hex", volBase + testSandbox + "/" + strings.ToUpper(testHex), "64 lowercase hex"},
		{"short hex", volBase + testSandbox + "/" + testHex[:63], "64 lowercase hex"},
		{"long hex", volBase + testSandbox + "/" + testHex + "3", "64 lowercase hex"},
		{"algorithm prefix", volBase + testSandbox + "/sha256:" + testHex, "64 lowercase hex"},
		{"not hex", volBase + testSandbox + "/" + strings.Repeat("g", 64), "64 lowercase hex"},
		{"another sandbox's volume", volBase + "other-pod/" + testHex, "not of this container's sandbox"},
		{"the sandbox's whole folder", volBase + testSandbox, "image-volumes directory itself"},
		{"the whole image-volumes folder", DefaultCRIStateDir + "/image-volumes", "not under"},
		{"dot-dot", volBase + testSandbox + "/" + testHex + "/../" + testHex, "climbs out"},
		{"dot-dot deeper", volBase + testSandbox + "/" + testHex + "/d/../../x", "climbs out"},
		{"double slash", volBase + testSandbox + "//" + testHex, "not a sha256 digest"},
		{"empty sandbox", volBase + "/" + testHex, "not of this container's sandbox"},
		{"another state dir (flag not set)", "/run/k3s/containerd/io.containerd.grpc.v1.cri/image-volumes/" + testSandbox + "/" + testHex,
			"--cri-state-dir"},
		{"hostPath dressed as one, upper-case hex", "/data/image-volumes/x/" + strings.ToUpper(testHex), "--cri-state-dir"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			mounts := []*api.Mount{
				{Destination: "/data", Source: "/var/lib/data"},
				{Destination: "/tools", Source: tc.src},
			}
			vols, err := ImageVolumes(DefaultCRIStateDir, testSandbox, mounts)
			var me *MountError
			if !errors.As(err, &me) {
				t.Fatalf("ImageVolumes(%q) = %+v, %v; want a *MountError", tc.src, vols, err)
			}
			if me.Destination != "/tools" || !strings.Contains(err.Error(), tc.why) || !strings.Contains(err.Error(), "/tools") {
				t.Errorf("error %q (destination %q): want it to name /tools and say %q", err, me.Destination, tc.why)
			}
		})
	}
}

// TestImageVolumesAll: every image volume of a container is returned, in
// mount order, beside its other mounts.
func TestImageVolumesAll(t *testing.T) {
	other := strings.Repeat("4", 64)
	mounts := []*api.Mount{
		{Destination: "/etc/hosts", Source: DefaultCRIStateDir + "/sandboxes/" + testSandbox + "/hosts"},
		{Destination: "/a", Source: volBase + testSandbox + "/" + testHex},
		{Destination: "/proc", Source: "proc", Type: "proc"},
		{Destination: "/b", Source: volBase + testSandbox + "/" + other},
	}
	vols, err := ImageVolumes(DefaultCRIStateDir, testSandbox, mounts)
	if err != nil {
		t.Fatal(err)
	}
	if len(vols) != 2 || vols[0].Destination != "/a" || vols[0].Digest != "sha256:"+testHex ||
		vols[1].Destination != "/b" || vols[1].Digest != "sha256:"+other {
		t.Errorf("ImageVolumes = %+v", vols)
	}
	// Another configured state dir: the default's volumes are look-alikes.
	if _, err := ImageVolumes("/var/run/cri", testSandbox, mounts); err == nil {
		t.Error("volumes under another state dir than the configured one were accepted")
	}
}

// TestImageVolumesNoAllocs: every create request parses the container's
// mounts, on the path whose cached answer costs microseconds: a container
// without image volumes must cost no allocation.
func TestImageVolumesNoAllocs(t *testing.T) {
	mounts := []*api.Mount{
		{Destination: "/etc/hosts", Source: DefaultCRIStateDir + "/sandboxes/" + testSandbox + "/hosts"},
		{Destination: "/dev/termination-log", Source: "/var/lib/kubelet/pods/uid/containers/app/0123"},
		{Destination: "/data", Source: "/data/image-volumes/readme/and/more/image-volumes/x"},
		{Destination: "/proc", Source: "proc", Type: "proc"},
	}
	base := volumesBase(DefaultCRIStateDir)
	allocs := testing.AllocsPerRun(100, func() {
		if vols, err := imageVolumesUnder(base, testSandbox, mounts); err != nil || vols != nil {
			t.Fatalf("imageVolumesUnder = %v, %v", vols, err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per request without image volumes, want 0", allocs)
	}
}

// FuzzImageVolumes: whatever the mount source, parsing never panics, and
// a volume it returns is one containerd could have made: under the state
// dir's image-volumes/<this sandbox>/, in canonical form, its digest the
// 64 lowercase hex digits of the path's next component.
func FuzzImageVolumes(f *testing.F) {
	for _, s := range []string{
		volBase + testSandbox + "/" + testHex,
		volBase + testSandbox + "/" + testHex + "/sub/dir",
		volBase + testSandbox + "/" + strings.ToUpper(testHex),
		volBase + testSandbox + "/../" + testHex,
		"/data/image-volumes/x/" + testHex,
		"/image-volumes//",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		vols, err := ImageVolumes(DefaultCRIStateDir, testSandbox, []*api.Mount{{Destination: "/v", Source: src}})
		if err != nil {
			var me *MountError
			if !errors.As(err, &me) || me.Destination != "/v" {
				t.Fatalf("error %v is not a MountError for /v", err)
			}
			return
		}
		for _, v := range vols {
			rest, ok := strings.CutPrefix(src, volBase+testSandbox+"/")
			hex, _, _ := strings.Cut(rest, "/")
			if !ok || !isHex64(hex) || v.Digest != "sha256:"+hex || path.Clean(src) != src || v.Dir != volBase+testSandbox+"/"+hex {
				t.Fatalf("source %q gave volume %+v", src, v)
			}
		}
	})
}
