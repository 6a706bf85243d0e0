package notation_test

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/nri-image-verifier/nri-image-verifier/verify"
	"github.com/nri-image-verifier/nri-image-verifier/verify/registry"
	"github.com/nri-image-verifier/nri-image-verifier/verify/validators"
)

// A policy file in Connaisseur's shape, built into a verifier the way the
// daemon builds it (validators.Builder), admits the pinned signer only.
func TestPolicyFile(t *testing.T) {
	host := imagetest.StartRegistry(t)
	repo := host + "/team/app"
	ca := imagetest.NewNotationCA(t, imagetest.NotationSubject("Example", "Example Root"))
	p, err := policy.Parse(fmt.Appendf(nil, `
validators:
- name: release
  type: notation
  trustRoots:
  - name: default
    cert: %s
policy:
- pattern: "%s/team/*"
  validator: release
  with:
    trustedIdentities: ["x509.subject: C=US, ST=WA, O=Example, CN=release"]
`, strconv.Quote(ca.PEM()), host))
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.New(registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := p.Match(repo+":v1", "")
	if err != nil {
		t.Fatal(err)
	}
	v, err := validators.Builder(reg)(m.Validator)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		cn    string
		allow bool
	}{{"release", true}, {"someone-else", false}} {
		d := imagetest.PushImage(t, repo+":"+tc.cn)
		imagetest.SignNotation(t, repo, d, ca.Issue(t, imagetest.NotationSubject("Example", tc.cn), time.Time{}, time.Time{}), imagetest.NotationSignOptions{})
		got, err := v.Verify(t.Context(), verify.Subject{Repository: repo, Digest: d}, m.Rule.With)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %+v", tc.cn, got)
		if got.Allowed != tc.allow {
			t.Errorf("signer %s: allowed=%v (%s), want %v", tc.cn, got.Allowed, got.Reason, tc.allow)
		}
	}
}
