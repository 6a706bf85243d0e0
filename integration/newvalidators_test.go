package integration

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/sigstoretest"
)

const (
	ghIssuer = "https://token.actions.githubusercontent.com"
	workflow = "https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1.2.0"
	builder  = "https://github.com/acme/builder/.github/workflows/slsa.yml@refs/tags/v2"
)

// TestKeylessAttestationNotation runs the daemon with one policy that uses
// the three newer kinds of check, each through NRI and the real binary: a
// keyless cosign identity with offline Rekor and SCT checks, a key-signed
// image that must also carry a SLSA provenance attestation whose builder
// is pinned by a CEL condition, and notation with a pinned signer. Each is
// shown allowed once and refused once, with the reason in the runtime's
// error.
func TestKeylessAttestationNotation(t *testing.T) {
	h := imagetest.StartRegistry(t)
	ss := sigstoretest.New(t)
	release := imagetest.NewSigner(t, imagetest.ECDSAP256)
	ca := imagetest.NewNotationCA(t, imagetest.NotationSubject("acme", "acme root"))
	pinned := ca.Issue(t, imagetest.NotationSubject("acme", "release"), time.Time{}, time.Time{})
	intruder := ca.Issue(t, imagetest.NotationSubject("acme", "intern"), time.Time{}, time.Time{})

	push := func(ref string) imagetest.Image { return imagetest.PushImageConfig(t, h+"/"+ref) }
	repo := func(ref string) string { return h + "/" + strings.SplitN(ref, ":", 2)[0] }

	keylessOK := push("keyless/app:v1")
	imagetest.SignBundleKeyless(t, repo("keyless/app"), keylessOK.Digest, ss, sigstoretest.Identity{Issuer: ghIssuer, Subject: workflow}, imagetest.KeylessOptions{})
	keylessFork := push("keyless/app:fork")
	imagetest.SignLegacyKeyless(t, repo("keyless/app"), keylessFork.Digest, ss,
		sigstoretest.Identity{Issuer: ghIssuer, Subject: "https://github.com/fork/app/.github/workflows/release.yml@refs/tags/v1.2.0"}, imagetest.KeylessOptions{})
	keylessNoLog := push("keyless/app:nolog")
	imagetest.SignLegacyKeyless(t, repo("keyless/app"), keylessNoLog.Digest, ss, sigstoretest.Identity{Issuer: ghIssuer, Subject: workflow}, imagetest.KeylessOptions{NoEntry: true})

	provenance := func(builderID string) string {
		return fmt.Sprintf(`{"buildDefinition": {"buildType": "https://slsa-framework.github.io/github-actions-buildtypes/workflow/v1"}, "runDetails": {"builder": {"id": %q}}}`, builderID)
	}
	attested := push("attested/app:v1")
	imagetest.SignBundle(t, repo("attested/app"), attested.Digest, release, imagetest.SignOptions{})
	imagetest.AttestBundle(t, repo("attested/app"), attested.Digest, release, imagetest.SLSAProvenanceV1, provenance(builder))
	otherBuilder := push("attested/app:v2")
	imagetest.SignBundle(t, repo("attested/app"), otherBuilder.Digest, release, imagetest.SignOptions{})
	imagetest.AttestBundle(t, repo("attested/app"), otherBuilder.Digest, release, imagetest.SLSAProvenanceV1, provenance("https://ci.example/untrusted"))
	signedOnly := push("attested/app:v3")
	imagetest.SignLegacy(t, repo("attested/app"), signedOnly.Digest, release, imagetest.SignOptions{})

	notationOK := push("notation/app:v1")
	imagetest.SignNotation(t, repo("notation/app"), notationOK.Digest, pinned, imagetest.NotationSignOptions{})
	notationIntern := push("notation/app:v2")
	imagetest.SignNotation(t, repo("notation/app"), notationIntern.Digest, intruder, imagetest.NotationSignOptions{MediaType: imagetest.NotationCOSE})

	policyFile := filepath.Join(t.TempDir(), "policy.yaml")
	writePolicy(t, policyFile, fmt.Sprintf(`
validators:
- name: keyless
  type: cosign
  host:
    fulcioCert: |
%s
    rekorPubkey: |
%s
    ctLogPubkey: |
%s
  trustRoots:
  - name: ci
    keyless:
      issuer: %s
      subjectRegex: 'https://github\.com/acme/app/\.github/workflows/release\.yml@refs/tags/v.*'
- name: keyed
  type: cosign
  trustRoots:
  - name: release
    key: |
%s
- name: notation
  type: notation
  trustRoots:
  - name: acme
    cert: |
%s
policy:
- pattern: "%[7]s/keyless/*"
  validator: keyless
  with: {trustRoot: ci}
- pattern: "%[7]s/attested/*"
  validator: keyed
  with:
    trustRoot: release
    attestations:
    - predicateType: slsaprovenance1
      conditions: ["predicate.runDetails.builder.id == '%[8]s'"]
- pattern: "%[7]s/notation/*"
  validator: notation
  with:
    trustRoot: acme
    trustedIdentities: ["x509.subject: C=US, ST=WA, O=acme, CN=release"]
`, indent(ss.ChainPEM(t)), indent(ss.RekorPublicKeyPEM(t)), indent(ss.CTLogPublicKeyPEM(t)), ghIssuer,
		indent(release.PublicKeyPEM()), indent(ca.PEM()), h, builder))

	rt := startRuntime(t)
	p := startPlugin(t, rt, policyFile)

	cases := []struct {
		name, image string
		img         imagetest.Image
		allowed     bool
		validator   string
		errHas      []string
	}{
		{"keyless, pinned workflow", h + "/keyless/app:v1", keylessOK, true, "keyless", nil},
		{"keyless, forked workflow", h + "/keyless/app:fork", keylessFork, false, "keyless", []string{"subject", "https://github.com/fork/app", "does not match regex"}},
		{"keyless, not in the log", h + "/keyless/app:nolog", keylessNoLog, false, "keyless", []string{"transparency-log"}},
		{"attested by the pinned builder", h + "/attested/app:v1", attested, true, "keyed", nil},
		{"attested by another builder", h + "/attested/app:v2", otherBuilder, false, "keyed", []string{"predicate.runDetails.builder.id", "is false"}},
		{"signed, not attested", h + "/attested/app:v3", signedOnly, false, "keyed", []string{"no attestation of type " + imagetest.SLSAProvenanceV1}},
		{"notation, pinned signer", h + "/notation/app:v1", notationOK, true, "notation", nil},
		{"notation, unpinned signer", h + "/notation/app:v2", notationIntern, false, "notation", []string{"CN=intern"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id, err := rt.create("team-a", tc.image, tc.img.Digest, tc.img.ConfigDigest)
			if tc.allowed != (err == nil) {
				t.Fatalf("allowed = %v, want %v (err: %v)", err == nil, tc.allowed, err)
			}
			if err != nil {
				t.Logf("refused: %v", err)
			}
			for _, s := range tc.errHas {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error does not name %q: %v", s, err)
				}
			}
			line := p.auditLine(t, id)
			if line["validator"] != tc.validator || line["digest"] != tc.img.Digest {
				t.Errorf("audit line: %v", line)
			}
		})
	}
}
