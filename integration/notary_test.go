package integration

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/notarytest"
)

// TestNotaryV1 runs the daemon with a mixed policy in Connaisseur's shape
// (cosign for one repository tree, notaryv1 for another) against a real
// notary-server holding trust data published with notary's client, and
// drives container creations through NRI.
func TestNotaryV1(t *testing.T) {
	h := imagetest.StartRegistry(t)
	ns := notarytest.Start(t)
	alice := imagetest.NewSigner(t, imagetest.ECDSAP256)

	// Docker Content Trust: root key, targets/releases delegation, v1 signed.
	signed := imagetest.PushImageConfig(t, h+"/dct/app:v1")
	unsigned := imagetest.PushImageConfig(t, h+"/dct/app:v2")
	dct := ns.NewRepo(t, h+"/dct/app", notarytest.ECDSA)
	dct.AddDelegation("releases")
	dct.Sign("v1", signed.Digest, "releases")
	// Signed with cosign only, under the notary tree: no trust data.
	cosignInDCT := imagetest.PushImageConfig(t, h+"/dct/cosigned:v1")
	imagetest.SignLegacy(t, h+"/dct/cosigned", cosignInDCT.Digest, alice, imagetest.SignOptions{})
	// cosign tree: one signed with cosign, one with notary only.
	cosigned := imagetest.PushImageConfig(t, h+"/cosign/app:v1")
	imagetest.SignLegacy(t, h+"/cosign/app", cosigned.Digest, alice, imagetest.SignOptions{})
	notaryOnly := imagetest.PushImageConfig(t, h+"/cosign/dct:v1")
	ns.NewRepo(t, h+"/cosign/dct", notarytest.ECDSA).Sign("v1", notaryOnly.Digest)

	policyFile := filepath.Join(t.TempDir(), "policy.yaml")
	writePolicy(t, policyFile, fmt.Sprintf(`
validators:
- name: default
  type: cosign
  trustRoots:
  - name: alice
    key: |
%s
- name: dct
  type: notaryv1
  host: %s
  trustRoots:
  - name: default
    key: |
%s
policy:
- pattern: "%[4]s/cosign/*"
  with: {trustRoot: alice}
- pattern: "%[4]s/dct/*"
  validator: dct
  with:
    delegations: [releases]
`, indent(alice.PublicKeyPEM()), ns.URL, indent(dct.RootKeyPEM()), h))

	rt := startRuntime(t)
	p := startPlugin(t, rt, policyFile)

	cases := []struct {
		name, image    string
		img            imagetest.Image
		allowed        bool
		validator      string
		errHas, reason []string
	}{
		{"notary signed, by tag", h + "/dct/app:v1", signed, true, "dct", nil, []string{"targets/releases as v1"}},
		{"notary signed, by digest", h + "/dct/app@" + signed.Digest, signed, true, "dct", nil, nil},
		{"notary unsigned tag", h + "/dct/app:v2", unsigned, false, "dct", []string{"digest mismatch", unsigned.Digest, "v1 -> " + signed.Digest}, nil},
		{"cosign only, under notary rule", h + "/dct/cosigned:v1", cosignInDCT, false, "dct", []string{"no trust data for " + h + "/dct/cosigned"}, nil},
		{"cosign signed", h + "/cosign/app:v1", cosigned, true, "default", nil, []string{"alice"}},
		{"notary only, under cosign rule", h + "/cosign/dct:v1", notaryOnly, false, "default", []string{"no cosign signature"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id, err := rt.create("team-a", tc.image, tc.img.Digest, tc.img.ConfigDigest)
			if tc.allowed != (err == nil) {
				t.Fatalf("allowed = %v, want %v (err: %v)", err == nil, tc.allowed, err)
			}
			for _, s := range tc.errHas {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error does not name %q: %v", s, err)
				}
			}
			line := p.auditLine(t, id)
			if line["validator"] != tc.validator || line["digest"] != tc.img.Digest || line["image"] != tc.image {
				t.Errorf("audit line: %v", line)
			}
			for _, s := range tc.reason {
				if !strings.Contains(fmt.Sprint(line["reason"]), s) {
					t.Errorf("audit reason does not name %q: %v", s, line["reason"])
				}
			}
		})
	}

	t.Run("notary server down", func(t *testing.T) {
		fresh := imagetest.PushImageConfig(t, h+"/dct/app:v3")
		ns.Stop()
		_, err := rt.create("team-a", h+"/dct/app:v3", fresh.Digest, fresh.ConfigDigest)
		if err == nil || !strings.Contains(err.Error(), "verification failed: notary server") || !strings.Contains(err.Error(), "unreachable") {
			t.Fatalf("err = %v, want a deny saying the notary server is unreachable", err)
		}
	})
}
