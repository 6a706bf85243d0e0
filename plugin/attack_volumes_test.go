package plugin

import (
	"strings"
	"testing"

	"github.com/containerd/nri/pkg/api"
)

// TestAttackImageVolumeSpellings: sources a tenant can make containerd
// send for an image volume (kubelet passes volumeMounts[].subPath to
// CRI's image_sub_path unchanged, rejecting only absolute paths and "..";
// containerd joins it to the volume's folder without cleaning it, as
// integration/containerd TestAttackImageVolumes shows on v2.4.2 and
// v2.2.9). Whatever the spelling, a source under the image-volumes folder
// must never be ignored: it is either parsed, with the digest of its
// <sandbox>/<hex> folder, or refused.
func TestAttackImageVolumeSpellings(t *testing.T) {
	dir := volBase + testSandbox + "/" + testHex
	srcs := []string{
		dir, dir + "/d", dir + "/d/", dir + "/./d", dir + "/d//", dir + "/d/.", dir + "/.", dir + "/d/e/..",
		dir + "/d/../d", dir + "/..", dir + "/../" + strings.Repeat("c", 64), dir + "//d",
		volBase + testSandbox + "/./" + testHex, volBase + "./" + testSandbox + "/" + testHex,
		volBase + testSandbox + "/" + testHex + "\x00/d", volBase + testSandbox + "/" + testHex + "\n",
		volBase + testSandbox, volBase + testSandbox + "/", volBase, strings.TrimSuffix(volBase, "/"),
		volBase + "../image-volumes/" + testSandbox + "/" + testHex,
		DefaultCRIStateDir + "//image-volumes/" + testSandbox + "/" + testHex,
		"/" + DefaultCRIStateDir + "/image-volumes/" + testSandbox + "/" + testHex,
	}
	for _, src := range srcs {
		vols, err := ImageVolumes(DefaultCRIStateDir, testSandbox, []*api.Mount{{Destination: "/tools", Source: src, Type: "bind"}})
		switch {
		case err != nil:
			t.Logf("refused %q: %v", src, err)
		case len(vols) == 1:
			if vols[0].Digest != "sha256:"+testHex || vols[0].Dir != dir {
				t.Errorf("%q parsed as %+v, want digest of %s", src, vols[0], dir)
			}
		default:
			t.Errorf("FAIL OPEN: %q (an image volume's spelling) is ignored: not checked at all", src)
		}
	}
}
