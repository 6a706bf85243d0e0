package cosign

import (
	"testing"

	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/nri-image-verifier/nri-image-verifier/verify"
	"github.com/nri-image-verifier/nri-image-verifier/verify/registry"
)

// Every key kind cosign supports, in both formats, is accepted.
func TestSignedAllowed(t *testing.T) {
	host := imagetest.StartRegistry(t)
	reg := newClient(t, registry.Options{})
	repo := host + "/app"
	for _, kind := range imagetest.KeyKinds {
		signer := imagetest.NewSigner(t, kind)
		v := newVerifier(t, reg, root{"default", signer})
		for _, f := range formats {
			t.Run(f.name+"/"+string(kind), func(t *testing.T) {
				d := imagetest.PushImage(t, repo+":"+f.name+"-"+string(kind))
				f.sign(t, repo, d, signer, imagetest.SignOptions{})
				got := check(t, v, verify.Subject{Repository: repo, Digest: d}, policy.With{})
				wantAllowed(t, got, "default")
				wantReason(t, got, `signed by trust roots [default] (threshold 1)`)
			})
		}
	}
}

func TestUnsignedDenied(t *testing.T) {
	host := imagetest.StartRegistry(t)
	repo := host + "/app"
	d := imagetest.PushImage(t, repo+":unsigned")
	v := newVerifier(t, newClient(t, registry.Options{}), root{"default", imagetest.NewSigner(t, imagetest.ECDSAP256)})
	got := check(t, v, verify.Subject{Repository: repo, Digest: d}, policy.With{})
	wantDenied(t, got, "no cosign signature found for "+d, "sha256-"+d[len("sha256:"):]+".sig", "OCI referrers")
}

// An image in a repository the registry has never seen is unsigned too.
func TestUnknownRepositoryDenied(t *testing.T) {
	host := imagetest.StartRegistry(t)
	v := newVerifier(t, newClient(t, registry.Options{}), root{"default", imagetest.NewSigner(t, imagetest.ECDSAP256)})
	d := "sha256:" + "ab0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd"[:64]
	got := check(t, v, verify.Subject{Repository: host + "/nothing", Digest: d}, policy.With{})
	wantDenied(t, got, "no cosign signature found")
}

func TestWrongKeyDenied(t *testing.T) {
	host := imagetest.StartRegistry(t)
	repo := host + "/app"
	reg := newClient(t, registry.Options{})
	signer := imagetest.NewSigner(t, imagetest.ECDSAP256)
	v := newVerifier(t, reg, root{"default", imagetest.NewSigner(t, imagetest.ECDSAP256)})
	for _, f := range formats {
		t.Run(f.name, func(t *testing.T) {
			d := imagetest.PushImage(t, repo+":"+f.name)
			f.sign(t, repo, d, signer, imagetest.SignOptions{})
			got := check(t, v, verify.Subject{Repository: repo, Digest: d}, policy.With{})
			wantDenied(t, got, `1 signature found, none verified with trust root "default"`, "does not verify")
		})
	}
}

// A genuine signature of image A, copied onto image B by someone with push
// access, must not admit B.
func TestReplayedSignatureDenied(t *testing.T) {
	host := imagetest.StartRegistry(t)
	repo := host + "/app"
	reg := newClient(t, registry.Options{})
	signer := imagetest.NewSigner(t, imagetest.ECDSAP256)
	v := newVerifier(t, reg, root{"default", signer})
	for _, f := range formats {
		t.Run(f.name, func(t *testing.T) {
			a := imagetest.PushImage(t, repo+":"+f.name+"-a")
			b := imagetest.PushImage(t, repo+":"+f.name+"-b")
			f.sign(t, repo, a, signer, imagetest.SignOptions{})
			wantAllowed(t, check(t, v, verify.Subject{Repository: repo, Digest: a}, policy.With{}), "default")

			imagetest.CopySignatures(t, repo, a, b)
			got := check(t, v, verify.Subject{Repository: repo, Digest: b}, policy.With{})
			wantDenied(t, got, "signature names digest "+a+", not "+b)
		})
	}
}

// The signer signed a payload naming another digest and attached it here.
func TestSignatureForOtherDigestDenied(t *testing.T) {
	host := imagetest.StartRegistry(t)
	repo := host + "/app"
	reg := newClient(t, registry.Options{})
	signer := imagetest.NewSigner(t, imagetest.Ed25519)
	v := newVerifier(t, reg, root{"default", signer})
	other := imagetest.PushImage(t, repo+":other")
	for _, f := range formats {
		t.Run(f.name, func(t *testing.T) {
			d := imagetest.PushImage(t, repo+":"+f.name)
			f.sign(t, repo, d, signer, imagetest.SignOptions{PayloadDigest: other})
			got := check(t, v, verify.Subject{Repository: repo, Digest: d}, policy.With{})
			wantDenied(t, got, "signature names digest "+other+", not "+d)
		})
	}
}

func TestTamperedPayloadDenied(t *testing.T) {
	host := imagetest.StartRegistry(t)
	repo := host + "/app"
	reg := newClient(t, registry.Options{})
	signer := imagetest.NewSigner(t, imagetest.RSA2048)
	v := newVerifier(t, reg, root{"default", signer})
	for _, f := range formats {
		t.Run(f.name, func(t *testing.T) {
			d := imagetest.PushImage(t, repo+":"+f.name)
			f.sign(t, repo, d, signer, imagetest.SignOptions{Tamper: true})
			got := check(t, v, verify.Subject{Repository: repo, Digest: d}, policy.With{})
			wantDenied(t, got, "none verified", "does not verify")
		})
	}
}

// A bundle attestation of another predicate type is not a signature, even
// when signed by the trusted key.
func TestAttestationIsNotASignature(t *testing.T) {
	host := imagetest.StartRegistry(t)
	repo := host + "/app"
	signer := imagetest.NewSigner(t, imagetest.ECDSAP256)
	v := newVerifier(t, newClient(t, registry.Options{}), root{"default", signer})
	d := imagetest.PushImage(t, repo+":attested")
	imagetest.SignBundle(t, repo, d, signer, imagetest.SignOptions{PredicateType: "https://slsa.dev/provenance/v1"})
	got := check(t, v, verify.Subject{Repository: repo, Digest: d}, policy.With{})
	wantDenied(t, got, "no cosign signature found")

	// Without the annotation that says so, it is read, and rejected.
	bare := imagetest.PushImage(t, repo+":attested-bare")
	imagetest.SignBundle(t, repo, bare, signer, imagetest.SignOptions{PredicateType: "https://slsa.dev/provenance/v1", NoAnnotations: true})
	got = check(t, v, verify.Subject{Repository: repo, Digest: bare}, policy.With{})
	wantDenied(t, got, `has predicate type "https://slsa.dev/provenance/v1", not "https://sigstore.dev/cosign/sign/v1"`)
}

// Both formats on one image, and several signatures in one `.sig` image,
// each count.
func TestSignaturesAddUp(t *testing.T) {
	host := imagetest.StartRegistry(t)
	repo := host + "/app"
	alice := imagetest.NewSigner(t, imagetest.ECDSAP256)
	bob := imagetest.NewSigner(t, imagetest.ECDSAP384)
	carol := imagetest.NewSigner(t, imagetest.Ed25519)
	v := newVerifier(t, newClient(t, registry.Options{}), root{"alice", alice}, root{"bob", bob}, root{"carol", carol})
	d := imagetest.PushImage(t, repo+":mixed")
	imagetest.SignLegacy(t, repo, d, alice, imagetest.SignOptions{})
	imagetest.SignLegacy(t, repo, d, carol, imagetest.SignOptions{})
	imagetest.SignBundle(t, repo, d, bob, imagetest.SignOptions{})
	got := check(t, v, verify.Subject{Repository: repo, Digest: d}, policy.With{TrustRoot: "*"})
	wantAllowed(t, got, "alice", "bob", "carol")
}

func wantReason(t testing.TB, got verify.Verdict, want string) {
	t.Helper()
	if got.Reason != want {
		t.Fatalf("reason %q, want %q", got.Reason, want)
	}
}

// Without the referrers API, cosign (and imagetest) keep the list in the
// referrers tag; remote.Referrers reads it.
func TestBundleViaReferrersTag(t *testing.T) {
	host := imagetest.StartRegistryWithoutReferrers(t)
	repo := host + "/app"
	signer := imagetest.NewSigner(t, imagetest.ECDSAP384)
	v := newVerifier(t, newClient(t, registry.Options{}), root{"default", signer})
	d := imagetest.PushImage(t, repo+":v1")
	imagetest.SignBundle(t, repo, d, signer, imagetest.SignOptions{})
	wantAllowed(t, check(t, v, verify.Subject{Repository: repo, Digest: d}, policy.With{}), "default")
}
