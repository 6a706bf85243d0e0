package notation

import (
	"strings"
	"testing"
	"time"

	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/nri-image-verifier/nri-image-verifier/verify"
	"github.com/nri-image-verifier/nri-image-verifier/verify/registry"
)

// A signature by the pinned identity, chaining to the trust root, is
// accepted in both envelope formats; pinning the organisation (a subset
// of the subject) or "*" accepts it too.
func TestPinnedIdentityAllowed(t *testing.T) {
	host := imagetest.StartRegistry(t)
	repo := host + "/app"
	ca := imagetest.NewNotationCA(t, imagetest.NotationSubject("Example", "Example Root"))
	signer := ca.Issue(t, release, time.Time{}, time.Time{})
	v := newVerifier(t, newClient(t, registry.Options{}), tr{"default", ca})
	for _, e := range envelopes {
		t.Run(e.name, func(t *testing.T) {
			d := imagetest.PushImage(t, repo+":"+e.name)
			imagetest.SignNotation(t, repo, d, signer, imagetest.NotationSignOptions{MediaType: e.mediaType})
			s := verify.Subject{Repository: repo, Digest: d}
			wantAllowed(t, verifyOnce(t, v, s, with("")), []string{"default"}, "signed by trust roots [default] (threshold 1, level strict)")
			wantAllowed(t, verifyOnce(t, v, s, with(LevelStrict, "x509.subject: C=US, ST=WA, O=Example")), []string{"default"})
			wantAllowed(t, verifyOnce(t, v, s, with(LevelStrict, "*")), []string{"default"})
		})
	}
}

// The point of the validator: a certificate the trusted CA issued to
// someone else does not pass for the pinned signer.
func TestUnpinnedIdentityDenied(t *testing.T) {
	host := imagetest.StartRegistry(t)
	repo := host + "/app"
	ca := imagetest.NewNotationCA(t, imagetest.NotationSubject("Example", "Example Root"))
	intruder := ca.Issue(t, imagetest.NotationSubject("Example", "intruder"), time.Time{}, time.Time{})
	v := newVerifier(t, newClient(t, registry.Options{}), tr{"default", ca})
	for _, e := range envelopes {
		t.Run(e.name, func(t *testing.T) {
			d := imagetest.PushImage(t, repo+":"+e.name)
			imagetest.SignNotation(t, repo, d, intruder, imagetest.NotationSignOptions{MediaType: e.mediaType})
			got := verifyOnce(t, v, verify.Subject{Repository: repo, Digest: d}, with(LevelPermissive))
			wantDenied(t, got, `1 notation signature found, none verified with trust root "default"`,
				`signer "CN=intruder,O=Example,ST=WA,C=US" is not a trusted identity`, pinned)
			// The same signer pinned is accepted: the identity made the
			// difference.
			wantAllowed(t, verifyOnce(t, v, verify.Subject{Repository: repo, Digest: d},
				with("", "x509.subject: C=US, ST=WA, O=Example, CN=intruder")), []string{"default"})
		})
	}
}

// A signer with the pinned subject, but a certificate from another CA,
// is not trusted.
func TestOtherCADenied(t *testing.T) {
	host := imagetest.StartRegistry(t)
	repo := host + "/app"
	ca := imagetest.NewNotationCA(t, imagetest.NotationSubject("Example", "Example Root"))
	rogue := imagetest.NewNotationCA(t, imagetest.NotationSubject("Example", "Example Root"))
	v := newVerifier(t, newClient(t, registry.Options{}), tr{"default", ca})
	d := imagetest.PushImage(t, repo+":v1")
	imagetest.SignNotation(t, repo, d, rogue.Issue(t, release, time.Time{}, time.Time{}), imagetest.NotationSignOptions{})
	got := verifyOnce(t, v, verify.Subject{Repository: repo, Digest: d}, with(""))
	wantDenied(t, got, `signer "CN=release,O=Example,ST=WA,C=US" has a certificate chain that leads to no certificate of trust root "default"`)
}

// A genuine signature of image A, attached to image B by someone with push
// access, does not admit B.
func TestReplayedSignatureDenied(t *testing.T) {
	host := imagetest.StartRegistry(t)
	repo := host + "/app"
	ca := imagetest.NewNotationCA(t, imagetest.NotationSubject("Example", "Example Root"))
	v := newVerifier(t, newClient(t, registry.Options{}), tr{"default", ca})
	a := imagetest.PushImage(t, repo+":a")
	b := imagetest.PushImage(t, repo+":b")
	imagetest.SignNotation(t, repo, a, ca.Issue(t, release, time.Time{}, time.Time{}), imagetest.NotationSignOptions{})
	wantAllowed(t, verifyOnce(t, v, verify.Subject{Repository: repo, Digest: a}, with("")), []string{"default"})

	imagetest.CopySignatures(t, repo, a, b)
	for _, level := range []string{LevelStrict, LevelAudit} {
		got := verifyOnce(t, v, verify.Subject{Repository: repo, Digest: b}, with(level))
		wantDenied(t, got, "names "+a, "not "+b)
	}
}

func TestUnsignedDenied(t *testing.T) {
	host := imagetest.StartRegistry(t)
	repo := host + "/app"
	ca := imagetest.NewNotationCA(t, imagetest.NotationSubject("Example", "Example Root"))
	v := newVerifier(t, newClient(t, registry.Options{}), tr{"default", ca})
	d := imagetest.PushImage(t, repo+":unsigned")
	for _, level := range []string{LevelStrict, LevelAudit} {
		got := verifyOnce(t, v, verify.Subject{Repository: repo, Digest: d}, with(level))
		wantDenied(t, got, "no notation signature found for "+d, imagetest.NotationArtifactType)
	}
	// An image the registry does not have is unsigned too, and says so.
	missing := "sha256:" + "ab0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd"
	got := verifyOnce(t, v, verify.Subject{Repository: host + "/nothing", Digest: missing}, with(""))
	wantDenied(t, got, "no notation signature found", "does not have manifest "+missing)
}

// A signature whose signed payload was changed fails its integrity check,
// which every level enforces.
func TestTamperedDenied(t *testing.T) {
	host := imagetest.StartRegistry(t)
	repo := host + "/app"
	ca := imagetest.NewNotationCA(t, imagetest.NotationSubject("Example", "Example Root"))
	v := newVerifier(t, newClient(t, registry.Options{}), tr{"default", ca})
	d := imagetest.PushImage(t, repo+":v1")
	imagetest.SignNotation(t, repo, d, ca.Issue(t, release, time.Time{}, time.Time{}), imagetest.NotationSignOptions{Tamper: true})
	for _, level := range []string{LevelStrict, LevelAudit} {
		got := verifyOnce(t, v, verify.Subject{Repository: repo, Digest: d}, with(level))
		wantDenied(t, got, "does not verify", "signature is invalid")
	}
}

// A signing certificate that has expired since it signed (no timestamp):
// strict denies; permissive and audit admit and say what they only logged,
// as the Notary Project's levels specify.
func TestExpiredCertificate(t *testing.T) {
	host := imagetest.StartRegistry(t)
	repo := host + "/app"
	ca := imagetest.NewNotationCA(t, imagetest.NotationSubject("Example", "Example Root"))
	v := newVerifier(t, newClient(t, registry.Options{}), tr{"default", ca})
	now := time.Now()
	expired := ca.Issue(t, release, now.Add(-3*time.Hour), now.Add(-time.Hour))
	for _, e := range envelopes {
		t.Run(e.name, func(t *testing.T) {
			d := imagetest.PushImage(t, repo+":"+e.name)
			imagetest.SignNotation(t, repo, d, expired, imagetest.NotationSignOptions{MediaType: e.mediaType, SigningTime: now.Add(-2 * time.Hour)})
			s := verify.Subject{Repository: repo, Digest: d}
			wantDenied(t, verifyOnce(t, v, s, with(LevelStrict)), "authenticTimestamp", "validity period", "expired")
			for _, level := range []string{LevelPermissive, LevelAudit} {
				wantAllowed(t, verifyOnce(t, v, s, with(level)), []string{"default"},
					"logged, not enforced at level "+level, "authenticTimestamp", "expired")
			}
		})
	}
}

// A signature past its own expiry: the same levels apply.
func TestExpiredSignature(t *testing.T) {
	host := imagetest.StartRegistry(t)
	repo := host + "/app"
	ca := imagetest.NewNotationCA(t, imagetest.NotationSubject("Example", "Example Root"))
	v := newVerifier(t, newClient(t, registry.Options{}), tr{"default", ca})
	d := imagetest.PushImage(t, repo+":v1")
	imagetest.SignNotation(t, repo, d, ca.Issue(t, release, time.Time{}, time.Time{}),
		imagetest.NotationSignOptions{SigningTime: time.Now().Add(-2 * time.Hour), Expiry: time.Hour})
	s := verify.Subject{Repository: repo, Digest: d}
	wantDenied(t, verifyOnce(t, v, s, with(LevelStrict)), "expiry: digital signature has expired")
	wantAllowed(t, verifyOnce(t, v, s, with(LevelPermissive)), []string{"default"}, "logged, not enforced at level permissive: expiry")
}

// Level audit enforces integrity and the binding to the digest only: an
// untrusted signer is admitted, and the verdict says so.
func TestAuditLevel(t *testing.T) {
	host := imagetest.StartRegistry(t)
	repo := host + "/app"
	ca := imagetest.NewNotationCA(t, imagetest.NotationSubject("Example", "Example Root"))
	rogue := imagetest.NewNotationCA(t, imagetest.NotationSubject("Rogue", "Rogue Root"))
	v := newVerifier(t, newClient(t, registry.Options{}), tr{"default", ca})

	d := imagetest.PushImage(t, repo+":intruder")
	imagetest.SignNotation(t, repo, d, ca.Issue(t, imagetest.NotationSubject("Example", "intruder"), time.Time{}, time.Time{}), imagetest.NotationSignOptions{})
	s := verify.Subject{Repository: repo, Digest: d}
	wantDenied(t, verifyOnce(t, v, s, with(LevelStrict)), "is not a trusted identity")
	wantAllowed(t, verifyOnce(t, v, s, with(LevelAudit)), nil,
		"admitted at verification level audit", `signer "CN=intruder,O=Example,ST=WA,C=US" is not a trusted identity`)

	d = imagetest.PushImage(t, repo+":rogue")
	imagetest.SignNotation(t, repo, d, rogue.Issue(t, release, time.Time{}, time.Time{}), imagetest.NotationSignOptions{})
	s = verify.Subject{Repository: repo, Digest: d}
	wantDenied(t, verifyOnce(t, v, s, with(LevelPermissive)), "leads to no certificate")
	wantAllowed(t, verifyOnce(t, v, s, with(LevelAudit)), nil, "admitted at verification level audit", "leads to no certificate")
}

// trustRoot "*" needs every root, as for cosign; threshold and required
// narrow that.
func TestThresholdAndRequired(t *testing.T) {
	host := imagetest.StartRegistry(t)
	repo := host + "/app"
	caA := imagetest.NewNotationCA(t, imagetest.NotationSubject("Example", "Root A"))
	caB := imagetest.NewNotationCA(t, imagetest.NotationSubject("Example", "Root B"))
	v := newVerifier(t, newClient(t, registry.Options{}), tr{"a", caA}, tr{"b", caB})
	d := imagetest.PushImage(t, repo+":v1")
	s := verify.Subject{Repository: repo, Digest: d}
	imagetest.SignNotation(t, repo, d, caA.Issue(t, release, time.Time{}, time.Time{}), imagetest.NotationSignOptions{})

	all := with("")
	all.TrustRoot = policy.AllTrustRoots
	wantDenied(t, verifyOnce(t, v, s, all), "threshold 2 not met: signed by [a]")
	one := all
	one.Threshold = new(1)
	wantAllowed(t, verifyOnce(t, v, s, one), []string{"a"})
	needB := one
	needB.Required = []string{"b"}
	wantDenied(t, verifyOnce(t, v, s, needB), `missing required root "b"`)
	onlyB := with("")
	onlyB.TrustRoot = "b"
	wantDenied(t, verifyOnce(t, v, s, onlyB), `none verified with trust root "b"`)

	// At level audit, a root's missing signature is an authenticity
	// failure like any other: logged, not enforced.
	auditAll := all
	auditAll.VerificationLevel = LevelAudit
	wantAllowed(t, verifyOnce(t, v, s, auditAll), []string{"a"}, "admitted at verification level audit", "threshold 2 not met: signed by [a]")

	imagetest.SignNotation(t, repo, d, caB.Issue(t, release, time.Time{}, time.Time{}), imagetest.NotationSignOptions{MediaType: imagetest.NotationCOSE})
	wantAllowed(t, verifyOnce(t, v, s, all), []string{"a", "b"}, "signed by trust roots [a b] (threshold 2")
	wantAllowed(t, verifyOnce(t, v, s, needB), []string{"a", "b"})
}

// For a multi-platform image, a signature of the index or of the
// container's platform manifest counts, as with cosign --recursive.
func TestMultiArch(t *testing.T) {
	host := imagetest.StartRegistry(t)
	repo := host + "/app"
	ca := imagetest.NewNotationCA(t, imagetest.NotationSubject("Example", "Example Root"))
	signer := ca.Issue(t, release, time.Time{}, time.Time{})
	v := newVerifier(t, newClient(t, registry.Options{}), tr{"default", ca})

	idx := imagetest.PushIndex(t, repo+":index")
	imagetest.SignNotation(t, repo, idx.Digest, signer, imagetest.NotationSignOptions{})
	arm := idx.Platforms[1]
	wantAllowed(t, verifyOnce(t, v, verify.Subject{Repository: repo, Digest: idx.Digest, ConfigDigest: arm.ConfigDigest}, with("")), []string{"default"})

	child := imagetest.PushIndex(t, repo+":child")
	imagetest.SignNotation(t, repo, child.Platforms[0].Digest, signer, imagetest.NotationSignOptions{})
	s := verify.Subject{Repository: repo, Digest: child.Digest, ConfigDigest: child.Platforms[0].ConfigDigest}
	wantAllowed(t, verifyOnce(t, v, s, with("")), []string{"default"})
	// The other platform's container is not covered by that signature.
	s.ConfigDigest = child.Platforms[1].ConfigDigest
	wantDenied(t, verifyOnce(t, v, s, with("")), "no notation signature found for "+child.Digest+" or "+child.Platforms[1].Digest)
}

// Only MaxSignatures referrers are examined, and the reason says so.
func TestSignatureCap(t *testing.T) {
	host := imagetest.StartRegistry(t)
	repo := host + "/app"
	ca := imagetest.NewNotationCA(t, imagetest.NotationSubject("Example", "Example Root"))
	v := newVerifier(t, newClient(t, registry.Options{MaxSignatures: 2}), tr{"default", ca})
	d := imagetest.PushImage(t, repo+":v1")
	for range 3 {
		imagetest.SignNotation(t, repo, d, ca.Issue(t, imagetest.NotationSubject("Example", "intruder"), time.Time{}, time.Time{}), imagetest.NotationSignOptions{})
	}
	got := verifyOnce(t, v, verify.Subject{Repository: repo, Digest: d}, with(""))
	wantDenied(t, got, "2 notation signatures found", "(1 more signature over the cap not examined)")
}

// A registry that cannot be reached leaves the answer open: an error, not
// a verdict.
func TestRegistryDownIsError(t *testing.T) {
	srv := imagetest.StartRegistryServer(t, nil)
	host := srv.Listener.Addr().String()
	repo := host + "/app"
	ca := imagetest.NewNotationCA(t, imagetest.NotationSubject("Example", "Example Root"))
	d := imagetest.PushImage(t, repo+":v1")
	v := newVerifier(t, newClient(t, registry.Options{Timeout: 2 * time.Second}), tr{"default", ca})
	srv.Close()
	got, err := v.Verify(t.Context(), verify.Subject{Repository: repo, Digest: d}, with(""))
	if err == nil {
		t.Fatalf("Verify with the registry down: verdict %+v, want an error", got)
	}
	t.Logf("error: %v", err)
}

// A signature that needs a verification plugin is not verified: the node
// runs no plugin, so it fails closed.
func TestPluginSignatureDenied(t *testing.T) {
	host := imagetest.StartRegistry(t)
	repo := host + "/app"
	ca := imagetest.NewNotationCA(t, imagetest.NotationSubject("Example", "Example Root"))
	v := newVerifier(t, newClient(t, registry.Options{}), tr{"default", ca})
	d := imagetest.PushImage(t, repo+":v1")
	imagetest.SignNotation(t, repo, d, ca.Issue(t, release, time.Time{}, time.Time{}), imagetest.NotationSignOptions{Plugin: "com.example.plugin"})
	for _, level := range []string{LevelStrict, LevelAudit} {
		wantDenied(t, verifyOnce(t, v, verify.Subject{Repository: repo, Digest: d}, with(level)), `"CN=release,O=Example,ST=WA,C=US" needs verification plugin com.example.plugin, and the node runs no notation plugins`)
	}
}

// With a timestamping root (tsCert), verifyTimestamp "always" demands an
// RFC 3161 timestamp, which this signature lacks; "afterCertExpiry" asks
// for one only once the signing certificate has expired.
func TestTimestampRequired(t *testing.T) {
	host := imagetest.StartRegistry(t)
	repo := host + "/app"
	ca := imagetest.NewNotationCA(t, imagetest.NotationSubject("Example", "Example Root"))
	tsa := imagetest.NewNotationCA(t, imagetest.NotationSubject("Example", "Example TSA Root"))
	val := newValidator(tr{"default", ca})
	val.TrustRoots[0].TSCert = tsa.PEM()
	v, err := New(val, newClient(t, registry.Options{}))
	if err != nil {
		t.Fatal(err)
	}
	d := imagetest.PushImage(t, repo+":v1")
	imagetest.SignNotation(t, repo, d, ca.Issue(t, release, time.Time{}, time.Time{}), imagetest.NotationSignOptions{})
	s := verify.Subject{Repository: repo, Digest: d}
	wantDenied(t, verifyOnce(t, v, s, with(LevelStrict)), "authenticTimestamp: no timestamp countersignature")
	wantAllowed(t, verifyOnce(t, v, s, with(LevelPermissive)), []string{"default"}, "logged, not enforced at level permissive: authenticTimestamp: no timestamp")
	after := with(LevelStrict)
	after.VerifyTimestamp = "afterCertExpiry"
	wantAllowed(t, verifyOnce(t, v, s, after), []string{"default"}, "level strict)")
}

// Referrers that are not usable notation signatures are denied with what
// is wrong with them, and a registry without the referrers API (the
// sha256-<hex> tag fallback) is read too.
func TestMalformedSignatures(t *testing.T) {
	host := imagetest.StartRegistryWithoutReferrers(t)
	repo := host + "/app"
	ca := imagetest.NewNotationCA(t, imagetest.NotationSubject("Example", "Example Root"))
	signer := ca.Issue(t, release, time.Time{}, time.Time{})
	v := newVerifier(t, newClient(t, registry.Options{}), tr{"default", ca})
	cases := []struct {
		name, mediaType, envelope, want string
	}{
		{"garbage envelope", imagetest.NotationJWS, "not an envelope", "does not verify"},
		{"garbage cose", imagetest.NotationCOSE, "\x00\x01", "does not verify"},
		{"wrong media type", "text/plain", "{}", `holds an envelope of media type "text/plain"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := imagetest.PushImage(t, repo+":"+c.name[:5])
			imagetest.AttachNotation(t, repo, d, c.mediaType, []byte(c.envelope), signer.Chain)
			wantDenied(t, verifyOnce(t, v, verify.Subject{Repository: repo, Digest: d}, with(LevelAudit)), c.want)
		})
	}
	t.Run("genuine", func(t *testing.T) {
		d := imagetest.PushImage(t, repo+":genuine")
		imagetest.SignNotation(t, repo, d, signer, imagetest.NotationSignOptions{})
		wantAllowed(t, verifyOnce(t, v, verify.Subject{Repository: repo, Digest: d}, with("")), []string{"default"})
	})
}

// Whoever signs chooses the certificate subject: a huge one does not make
// a huge refusal message.
func TestLongSubjectClipped(t *testing.T) {
	host := imagetest.StartRegistry(t)
	repo := host + "/app"
	ca := imagetest.NewNotationCA(t, imagetest.NotationSubject("Example", "Example Root"))
	v := newVerifier(t, newClient(t, registry.Options{}), tr{"default", ca})
	d := imagetest.PushImage(t, repo+":v1")
	imagetest.SignNotation(t, repo, d, ca.Issue(t, imagetest.NotationSubject(strings.Repeat("x", 20000), "intruder"), time.Time{}, time.Time{}), imagetest.NotationSignOptions{})
	got := verifyOnce(t, v, verify.Subject{Repository: repo, Digest: d}, with(""))
	wantDenied(t, got, "is not a trusted identity", "more bytes)")
	if len(got.Reason) > 2048 {
		t.Errorf("reason is %d bytes long", len(got.Reason))
	}
}
