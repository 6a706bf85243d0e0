package cosign

import (
	"testing"

	"github.com/nri-image-verifier/nri-image-verifier/internal/testimage"
	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/nri-image-verifier/nri-image-verifier/verify"
	"github.com/nri-image-verifier/nri-image-verifier/verify/registry"
)

// Every key kind cosign supports, in both formats, is accepted.
func TestSignedAllowed(t *testing.T) {
	host := testimage.StartRegistry(t)
	reg := newClient(t, registry.Options{})
	repo := host + "/app"
	for _, kind := range testimage.KeyKinds {
		signer := testimage.NewSigner(t, kind)
		v := newVerifier(t, reg, root{"default", signer})
		for _, f := range formats {
			t.Run(f.name+"/"+string(kind), func(t *testing.T) {
				d := testimage.PushImage(t, repo+":"+f.name+"-"+string(kind))
				f.sign(t, repo, d, signer, testimage.SignOptions{})
				got := check(t, v, verify.Subject{Repository: repo, Digest: d}, policy.With{})
				wantAllowed(t, got, "default")
				wantReason(t, got, `signed by trust roots [default] (threshold 1)`)
			})
		}
	}
}

func TestUnsignedDenied(t *testing.T) {
	host := testimage.StartRegistry(t)
	repo := host + "/app"
	d := testimage.PushImage(t, repo+":unsigned")
	v := newVerifier(t, newClient(t, registry.Options{}), root{"default", testimage.NewSigner(t, testimage.ECDSAP256)})
	got := check(t, v, verify.Subject{Repository: repo, Digest: d}, policy.With{})
	wantDenied(t, got, "no cosign signature found for "+d, "sha256-"+d[len("sha256:"):]+".sig", "OCI referrers")
}

// An image in a repository the registry has never seen is unsigned too.
func TestUnknownRepositoryDenied(t *testing.T) {
	host := testimage.StartRegistry(t)
	v := newVerifier(t, newClient(t, registry.Options{}), root{"default", testimage.NewSigner(t, testimage.ECDSAP256)})
	d := "sha256:" + "ab0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd"[:64]
	got := check(t, v, verify.Subject{Repository: host + "/nothing", Digest: d}, policy.With{})
	wantDenied(t, got, "no cosign signature found")
}

func TestWrongKeyDenied(t *testing.T) {
	host := testimage.StartRegistry(t)
	repo := host + "/app"
	reg := newClient(t, registry.Options{})
	signer := testimage.NewSigner(t, testimage.ECDSAP256)
	v := newVerifier(t, reg, root{"default", testimage.NewSigner(t, testimage.ECDSAP256)})
	for _, f := range formats {
		t.Run(f.name, func(t *testing.T) {
			d := testimage.PushImage(t, repo+":"+f.name)
			f.sign(t, repo, d, signer, testimage.SignOptions{})
			got := check(t, v, verify.Subject{Repository: repo, Digest: d}, policy.With{})
			wantDenied(t, got, `1 signature found, none verified with trust root "default"`, "does not verify")
		})
	}
}

// A genuine signature of image A, copied onto image B by someone with push
// access, must not admit B.
func TestReplayedSignatureDenied(t *testing.T) {
	host := testimage.StartRegistry(t)
	repo := host + "/app"
	reg := newClient(t, registry.Options{})
	signer := testimage.NewSigner(t, testimage.ECDSAP256)
	v := newVerifier(t, reg, root{"default", signer})
	for _, f := range formats {
		t.Run(f.name, func(t *testing.T) {
			a := testimage.PushImage(t, repo+":"+f.name+"-a")
			b := testimage.PushImage(t, repo+":"+f.name+"-b")
			f.sign(t, repo, a, signer, testimage.SignOptions{})
			wantAllowed(t, check(t, v, verify.Subject{Repository: repo, Digest: a}, policy.With{}), "default")

			testimage.CopySignatures(t, repo, a, b)
			got := check(t, v, verify.Subject{Repository: repo, Digest: b}, policy.With{})
			wantDenied(t, got, "signature names digest "+a+", not "+b)
		})
	}
}

// The signer signed a payload naming another digest and attached it here.
func TestSignatureForOtherDigestDenied(t *testing.T) {
	host := testimage.StartRegistry(t)
	repo := host + "/app"
	reg := newClient(t, registry.Options{})
	signer := testimage.NewSigner(t, testimage.Ed25519)
	v := newVerifier(t, reg, root{"default", signer})
	other := testimage.PushImage(t, repo+":other")
	for _, f := range formats {
		t.Run(f.name, func(t *testing.T) {
			d := testimage.PushImage(t, repo+":"+f.name)
			f.sign(t, repo, d, signer, testimage.SignOptions{PayloadDigest: other})
			got := check(t, v, verify.Subject{Repository: repo, Digest: d}, policy.With{})
			wantDenied(t, got, "signature names digest "+other+", not "+d)
		})
	}
}

func TestTamperedPayloadDenied(t *testing.T) {
	host := testimage.StartRegistry(t)
	repo := host + "/app"
	reg := newClient(t, registry.Options{})
	signer := testimage.NewSigner(t, testimage.RSA2048)
	v := newVerifier(t, reg, root{"default", signer})
	for _, f := range formats {
		t.Run(f.name, func(t *testing.T) {
			d := testimage.PushImage(t, repo+":"+f.name)
			f.sign(t, repo, d, signer, testimage.SignOptions{Tamper: true})
			got := check(t, v, verify.Subject{Repository: repo, Digest: d}, policy.With{})
			wantDenied(t, got, "none verified", "does not verify")
		})
	}
}

// A bundle attestation of another predicate type is not a signature, even
// when signed by the trusted key.
func TestAttestationIsNotASignature(t *testing.T) {
	host := testimage.StartRegistry(t)
	repo := host + "/app"
	signer := testimage.NewSigner(t, testimage.ECDSAP256)
	v := newVerifier(t, newClient(t, registry.Options{}), root{"default", signer})
	d := testimage.PushImage(t, repo+":attested")
	testimage.SignBundle(t, repo, d, signer, testimage.SignOptions{PredicateType: "https://slsa.dev/provenance/v1"})
	got := check(t, v, verify.Subject{Repository: repo, Digest: d}, policy.With{})
	wantDenied(t, got, "no cosign signature found")

	// Without the annotation that says so, it is read, and rejected.
	bare := testimage.PushImage(t, repo+":attested-bare")
	testimage.SignBundle(t, repo, bare, signer, testimage.SignOptions{PredicateType: "https://slsa.dev/provenance/v1", NoAnnotations: true})
	got = check(t, v, verify.Subject{Repository: repo, Digest: bare}, policy.With{})
	wantDenied(t, got, `has predicate type "https://slsa.dev/provenance/v1", not "https://sigstore.dev/cosign/sign/v1"`)
}

// Both formats on one image, and several signatures in one `.sig` image,
// each count.
func TestSignaturesAddUp(t *testing.T) {
	host := testimage.StartRegistry(t)
	repo := host + "/app"
	alice := testimage.NewSigner(t, testimage.ECDSAP256)
	bob := testimage.NewSigner(t, testimage.ECDSAP384)
	carol := testimage.NewSigner(t, testimage.Ed25519)
	v := newVerifier(t, newClient(t, registry.Options{}), root{"alice", alice}, root{"bob", bob}, root{"carol", carol})
	d := testimage.PushImage(t, repo+":mixed")
	testimage.SignLegacy(t, repo, d, alice, testimage.SignOptions{})
	testimage.SignLegacy(t, repo, d, carol, testimage.SignOptions{})
	testimage.SignBundle(t, repo, d, bob, testimage.SignOptions{})
	got := check(t, v, verify.Subject{Repository: repo, Digest: d}, policy.With{TrustRoot: "*"})
	wantAllowed(t, got, "alice", "bob", "carol")
}

func wantReason(t testing.TB, got verify.Verdict, want string) {
	t.Helper()
	if got.Reason != want {
		t.Fatalf("reason %q, want %q", got.Reason, want)
	}
}

// Without the referrers API, cosign (and testimage) keep the list in the
// referrers tag; remote.Referrers reads it.
func TestBundleViaReferrersTag(t *testing.T) {
	host := testimage.StartRegistryWithoutReferrers(t)
	repo := host + "/app"
	signer := testimage.NewSigner(t, testimage.ECDSAP384)
	v := newVerifier(t, newClient(t, registry.Options{}), root{"default", signer})
	d := testimage.PushImage(t, repo+":v1")
	testimage.SignBundle(t, repo, d, signer, testimage.SignOptions{})
	wantAllowed(t, check(t, v, verify.Subject{Repository: repo, Digest: d}, policy.With{}), "default")
}
