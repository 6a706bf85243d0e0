package cosign

import (
	"testing"
	"time"

	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/sigstoretest"
	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/nri-image-verifier/nri-image-verifier/verify"
	"github.com/nri-image-verifier/nri-image-verifier/verify/registry"
)

// A keyless signature in either format, by the identity the root names,
// with its Rekor entry and SCT verified against the inline material, is
// allowed: a URI subject exactly, an e-mail subject by regex.
func TestKeylessAllowed(t *testing.T) {
	host := imagetest.StartRegistry(t)
	reg := newClient(t, registry.Options{})
	repo := host + "/app"
	ss := sigstoretest.New(t)
	v := keylessVerifier(t, reg, policy.Validator{Host: inlineHost(t, ss), TrustRoots: []policy.TrustRoot{
		ciRoot,
		{Name: "people", Keyless: &policy.Keyless{Issuer: googleIssuer, SubjectRegex: `[a-z]+@example\.com`}},
	}})
	for _, f := range keylessFormats {
		t.Run(f.name+"/uri", func(t *testing.T) {
			d := imagetest.PushImage(t, repo+":uri-"+f.name)
			f.sign(t, repo, d, ss, ciIdentity, imagetest.KeylessOptions{})
			wantAllowed(t, check(t, v, verify.Subject{Repository: repo, Digest: d}, policy.With{TrustRoot: "ci"}), "ci")
		})
		t.Run(f.name+"/email", func(t *testing.T) {
			d := imagetest.PushImage(t, repo+":mail-"+f.name)
			f.sign(t, repo, d, ss, sigstoretest.Identity{Issuer: googleIssuer, Subject: mail}, imagetest.KeylessOptions{})
			wantAllowed(t, check(t, v, verify.Subject{Repository: repo, Digest: d}, policy.With{TrustRoot: "people"}), "people")
		})
	}
}

// The identity is checked part by part, and a deny names the part.
func TestKeylessIdentityDenied(t *testing.T) {
	host := imagetest.StartRegistry(t)
	reg := newClient(t, registry.Options{})
	repo := host + "/app"
	ss := sigstoretest.New(t)
	cases := []struct {
		name   string
		root   policy.Keyless
		signer sigstoretest.Identity
		reason string
	}{
		{"wrong issuer", policy.Keyless{Issuer: ghIssuer, Subject: workflow},
			sigstoretest.Identity{Issuer: "https://gitlab.com", Subject: workflow},
			`certificate issuer "https://gitlab.com" does not match "` + ghIssuer + `"`},
		{"issuer regex miss", policy.Keyless{IssuerRegex: `https://token\.actions\.githubusercontent\.com`, Subject: workflow},
			sigstoretest.Identity{Issuer: "https://token.actions.githubusercontent.com.evil.example", Subject: workflow},
			`does not match regex`},
		{"subject regex miss", policy.Keyless{Issuer: ghIssuer, SubjectRegex: `https://github\.com/org/repo/\.github/workflows/release\.yml@refs/tags/v.*`},
			ciIdentity, `certificate subject "` + workflow + `" does not match regex`},
		// Anchored: a prefix is not a match unless the regex says ".*".
		{"subject regex is anchored", policy.Keyless{Issuer: ghIssuer, SubjectRegex: `https://github\.com/org/`},
			ciIdentity, `does not match regex "https://github\\.com/org/"`},
		{"wrong subject", policy.Keyless{Issuer: ghIssuer, Subject: "https://github.com/org/other/.github/workflows/release.yml@refs/heads/main"},
			ciIdentity, `certificate subject "` + workflow + `" does not match`},
	}
	for _, f := range keylessFormats {
		for i, c := range cases {
			t.Run(f.name+"/"+c.name, func(t *testing.T) {
				v := keylessVerifier(t, reg, policy.Validator{Host: inlineHost(t, ss), TrustRoots: []policy.TrustRoot{{Name: "default", Keyless: &c.root}}})
				d := imagetest.PushImage(t, repo+":"+f.name+"-"+string(rune('a'+i)))
				f.sign(t, repo, d, ss, c.signer, imagetest.KeylessOptions{})
				wantDenied(t, check(t, v, verify.Subject{Repository: repo, Digest: d}, policy.With{}), `none verified with trust root "default"`, c.reason)
			})
		}
	}
	// The prefix regex written as one matches.
	v := keylessVerifier(t, reg, policy.Validator{Host: inlineHost(t, ss), TrustRoots: []policy.TrustRoot{
		{Name: "default", Keyless: &policy.Keyless{Issuer: ghIssuer, SubjectRegex: `https://github\.com/org/.*`}}}})
	d := imagetest.PushImage(t, repo+":prefix")
	imagetest.SignBundleKeyless(t, repo, d, ss, ciIdentity, imagetest.KeylessOptions{})
	wantAllowed(t, check(t, v, verify.Subject{Repository: repo, Digest: d}, policy.With{}), "default")
}

// A Fulcio certificate lives ten minutes. Without a trusted time an expired
// one is refused; the integrated time of a verified Rekor entry is such a
// time, and then the same signature is allowed.
func TestKeylessExpiredCertificate(t *testing.T) {
	host := imagetest.StartRegistry(t)
	reg := newClient(t, registry.Options{})
	repo := host + "/app"
	ss := sigstoretest.New(t)
	v := keylessVerifier(t, reg, policy.Validator{Host: inlineHost(t, ss), TrustRoots: []policy.TrustRoot{ciRoot}})
	issued := time.Now().Add(-time.Hour)
	for _, f := range keylessFormats {
		t.Run(f.name, func(t *testing.T) {
			d := imagetest.PushImage(t, repo+":expired-"+f.name)
			f.sign(t, repo, d, ss, ciIdentity, imagetest.KeylessOptions{
				Cert:  sigstoretest.CertOptions{NotBefore: issued},
				Entry: sigstoretest.EntryOptions{IntegratedTime: issued.Add(time.Minute)},
			})
			s := verify.Subject{Repository: repo, Digest: d}
			wantDenied(t, check(t, v, s, policy.With{TrustRoot: "ci", VerifyInTransparencyLog: boolp(false)}),
				"certificate expired at "+issued.Add(sigstoretest.CertValidity).UTC().Format(time.RFC3339), "no trusted timestamp")
			wantAllowed(t, check(t, v, s, policy.With{TrustRoot: "ci"}), "ci")
		})
	}
	// Logged after the certificate expired: the log's time does not help.
	d := imagetest.PushImage(t, repo+":logged-late")
	imagetest.SignBundleKeyless(t, repo, d, ss, ciIdentity, imagetest.KeylessOptions{Cert: sigstoretest.CertOptions{NotBefore: issued}})
	wantDenied(t, check(t, v, verify.Subject{Repository: repo, Digest: d}, policy.With{TrustRoot: "ci"}), "transparency-log entry")
}

// With the log check on (the default), the signature needs a Rekor entry
// that verifies with the configured key and is for this very signature.
func TestKeylessTransparencyLogDenied(t *testing.T) {
	host := imagetest.StartRegistry(t)
	reg := newClient(t, registry.Options{})
	repo := host + "/app"
	ss := sigstoretest.New(t)
	v := keylessVerifier(t, reg, policy.Validator{Host: inlineHost(t, ss), TrustRoots: []policy.TrustRoot{ciRoot}})
	cases := []struct {
		name string
		opts imagetest.KeylessOptions
	}{
		{"entry missing", imagetest.KeylessOptions{NoEntry: true}},
		{"SET forged", imagetest.KeylessOptions{Entry: sigstoretest.EntryOptions{SETKey: sigstoretest.NewKey(t)}}},
		{"entry of another signature", imagetest.KeylessOptions{EntryOfOther: true}},
	}
	for _, f := range keylessFormats {
		for i, c := range cases {
			t.Run(f.name+"/"+c.name, func(t *testing.T) {
				d := imagetest.PushImage(t, repo+":"+f.name+"-"+string(rune('a'+i)))
				f.sign(t, repo, d, ss, ciIdentity, c.opts)
				wantDenied(t, check(t, v, verify.Subject{Repository: repo, Digest: d}, policy.With{TrustRoot: "ci"}),
					"no transparency-log entry verified with the configured Rekor key")
			})
		}
	}
	// The switch is real: off, a signature with no entry (and a valid
	// certificate) is allowed.
	d := imagetest.PushImage(t, repo+":no-entry-tlog-off")
	imagetest.SignLegacyKeyless(t, repo, d, ss, ciIdentity, imagetest.KeylessOptions{NoEntry: true})
	wantAllowed(t, check(t, v, verify.Subject{Repository: repo, Digest: d}, policy.With{TrustRoot: "ci", VerifyInTransparencyLog: boolp(false)}), "ci")
}

// With the SCT check on (the default), the certificate must embed an SCT
// signed by the configured CT log key; off, a certificate without one is
// allowed.
func TestKeylessSCT(t *testing.T) {
	host := imagetest.StartRegistry(t)
	reg := newClient(t, registry.Options{})
	repo := host + "/app"
	ss := sigstoretest.New(t)
	v := keylessVerifier(t, reg, policy.Validator{Host: inlineHost(t, ss), TrustRoots: []policy.TrustRoot{ciRoot}})
	for _, f := range keylessFormats {
		t.Run(f.name, func(t *testing.T) {
			missing := imagetest.PushImage(t, repo+":no-sct-"+f.name)
			f.sign(t, repo, missing, ss, ciIdentity, imagetest.KeylessOptions{Cert: sigstoretest.CertOptions{NoSCT: true}})
			forged := imagetest.PushImage(t, repo+":forged-sct-"+f.name)
			f.sign(t, repo, forged, ss, ciIdentity, imagetest.KeylessOptions{Cert: sigstoretest.CertOptions{SCTKey: sigstoretest.NewKey(t)}})
			on := policy.With{TrustRoot: "ci"}
			off := policy.With{TrustRoot: "ci", VerifySCT: boolp(false)}
			for _, d := range []string{missing, forged} {
				wantDenied(t, check(t, v, verify.Subject{Repository: repo, Digest: d}, on), "no SCT in the certificate verified with the configured CT log key")
			}
			wantAllowed(t, check(t, v, verify.Subject{Repository: repo, Digest: missing}, off), "ci")
		})
	}
}

// The material may come from a Sigstore trusted_root.json alone.
func TestKeylessTrustedRootFile(t *testing.T) {
	host := imagetest.StartRegistry(t)
	reg := newClient(t, registry.Options{})
	repo := host + "/app"
	ss := sigstoretest.New(t)
	v := keylessVerifier(t, reg, policy.Validator{TrustedRoot: ss.WriteTrustedRoot(t), TrustRoots: []policy.TrustRoot{ciRoot}})
	for _, f := range keylessFormats {
		t.Run(f.name, func(t *testing.T) {
			d := imagetest.PushImage(t, repo+":file-"+f.name)
			f.sign(t, repo, d, ss, ciIdentity, imagetest.KeylessOptions{})
			wantAllowed(t, check(t, v, verify.Subject{Repository: repo, Digest: d}, policy.With{TrustRoot: "ci"}), "ci")
			forged := imagetest.PushImage(t, repo+":file-forged-"+f.name)
			f.sign(t, repo, forged, ss, ciIdentity, imagetest.KeylessOptions{Entry: sigstoretest.EntryOptions{SETKey: sigstoretest.NewKey(t)}})
			wantDenied(t, check(t, v, verify.Subject{Repository: repo, Digest: forged}, policy.With{TrustRoot: "ci"}), "no transparency-log entry verified")
		})
	}
}

// A certificate from another CA (with its own, genuine, log and CT log)
// does not chain to the configured Fulcio root.
func TestKeylessOtherCADenied(t *testing.T) {
	host := imagetest.StartRegistry(t)
	reg := newClient(t, registry.Options{})
	repo := host + "/app"
	ss, other := sigstoretest.New(t), sigstoretest.New(t)
	v := keylessVerifier(t, reg, policy.Validator{Host: inlineHost(t, ss), TrustRoots: []policy.TrustRoot{ciRoot}})
	for _, f := range keylessFormats {
		t.Run(f.name, func(t *testing.T) {
			d := imagetest.PushImage(t, repo+":other-ca-"+f.name)
			f.sign(t, repo, d, other, ciIdentity, imagetest.KeylessOptions{})
			// The logs' checks off, so that only the chain is in question.
			wantDenied(t, check(t, v, verify.Subject{Repository: repo, Digest: d}, policy.With{TrustRoot: "ci", VerifyInTransparencyLog: boolp(false), VerifySCT: boolp(false)}),
				"certificate does not chain to the configured Fulcio CA")
		})
	}
}

// A key-signed signature does not count for a keyless root, nor a keyless
// one for a key root; each counts for its own in one validator.
func TestKeylessAndKeyRoots(t *testing.T) {
	host := imagetest.StartRegistry(t)
	reg := newClient(t, registry.Options{})
	repo := host + "/app"
	ss := sigstoretest.New(t)
	signer := imagetest.NewSigner(t, imagetest.ECDSAP256)
	v := keylessVerifier(t, reg, policy.Validator{Host: inlineHost(t, ss), TrustRoots: []policy.TrustRoot{
		ciRoot, {Name: "key", Key: signer.PublicKeyPEM()},
	}})
	for i, f := range keylessFormats {
		t.Run(f.name, func(t *testing.T) {
			d := imagetest.PushImage(t, repo+":mixed-"+f.name)
			formats[i].sign(t, repo, d, signer, imagetest.SignOptions{})
			s := verify.Subject{Repository: repo, Digest: d}
			wantDenied(t, check(t, v, s, policy.With{TrustRoot: "ci"}), `none verified with trust root "ci"`)
			f.sign(t, repo, d, ss, ciIdentity, imagetest.KeylessOptions{})
			wantAllowed(t, check(t, v, s, policy.With{TrustRoot: policy.AllTrustRoots}), "ci", "key")
		})
	}
}
