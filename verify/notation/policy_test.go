package notation_test

import (
	"fmt"
	"strconv"
	"strings"
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
	v, with := verifierFor(t, p, repo+":v1")
	for _, tc := range []struct {
		cn    string
		allow bool
	}{{"release", true}, {"someone-else", false}} {
		d := imagetest.PushImage(t, repo+":"+tc.cn)
		imagetest.SignNotation(t, repo, d, ca.Issue(t, imagetest.NotationSubject("Example", tc.cn), time.Time{}, time.Time{}), imagetest.NotationSignOptions{})
		got, err := v.Verify(t.Context(), verify.Subject{Repository: repo, Digest: d}, with)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %+v", tc.cn, got)
		if got.Allowed != tc.allow {
			t.Errorf("signer %s: allowed=%v (%s), want %v", tc.cn, got.Allowed, got.Reason, tc.allow)
		}
	}
}

// Connaisseur's notation rules never set trustedIdentities (its notation
// validator has no such option and trusts any signer under the validator's
// roots). Such a file loads, checked as the daemon checks it, with a
// warning recommending a pinned identity, and means what it means in
// Connaisseur: an image signed by any certificate the trust root issued is
// admitted, one signed under another root is not.
func TestPolicyFileWithoutIdentities(t *testing.T) {
	host := imagetest.StartRegistry(t)
	repo := host + "/team/app"
	ca := imagetest.NewNotationCA(t, imagetest.NotationSubject("Example", "Example Root"))
	other := imagetest.NewNotationCA(t, imagetest.NotationSubject("Example", "Example Root"))
	// Connaisseur's docs/validators/notation.md layout.
	p, err := policy.ParseWith(fmt.Appendf(nil, `
validators:
- name: mynotation
  type: notation
  trustRoots:
  - name: default
    cert: %s
policy:
- pattern: "%s/team/*"
  validator: mynotation
`, strconv.Quote(ca.PEM()), host), validators.Check)
	if err != nil {
		t.Fatal(err)
	}
	ws := strings.Join(p.Warnings(), "\n")
	if !strings.Contains(ws, `policy[0] (`+host+`/team/*).with.trustedIdentities: not set, so any certificate issued under validator "mynotation"'s trust roots may sign`) {
		t.Errorf("warnings: %s", ws)
	}
	v, with := verifierFor(t, p, repo+":v1")
	for _, tc := range []struct {
		name   string
		ca     *imagetest.NotationCA
		signer string
		allow  bool
	}{
		{"release", ca, "release", true},
		{"anyone under the root", ca, "someone-else", true},
		{"another root", other, "release", false},
	} {
		d := imagetest.PushImage(t, repo+":"+tc.signer+strconv.FormatBool(tc.allow))
		imagetest.SignNotation(t, repo, d, tc.ca.Issue(t, imagetest.NotationSubject("Example", tc.signer), time.Time{}, time.Time{}), imagetest.NotationSignOptions{})
		got, err := v.Verify(t.Context(), verify.Subject{Repository: repo, Digest: d}, with)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %+v", tc.name, got)
		if got.Allowed != tc.allow {
			t.Errorf("%s: allowed=%v (%s), want %v", tc.name, got.Allowed, got.Reason, tc.allow)
		}
		if !tc.allow && !strings.Contains(got.Reason, `leads to no certificate of trust root "default"`) {
			t.Errorf("%s: reason %q", tc.name, got.Reason)
		}
	}
}

// verifierFor builds the verifier of the rule p matches image with, as the
// daemon builds it, and returns it with the rule's options.
func verifierFor(t *testing.T, p *policy.Policy, image string) (verify.Verifier, policy.With) {
	t.Helper()
	reg, err := registry.New(registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := p.Match(image, "")
	if err != nil {
		t.Fatal(err)
	}
	v, err := validators.Builder(reg)(m.Validator)
	if err != nil {
		t.Fatal(err)
	}
	return v, m.Rule.With
}
