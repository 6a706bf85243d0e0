package cosign

import (
	"testing"

	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/sigstoretest"
	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/nri-image-verifier/nri-image-verifier/verify/registry"
)

// Identities of the kind keyless signatures carry: a CI workflow (URI
// subject) and a person (e-mail subject).
const (
	ghIssuer     = "https://token.actions.githubusercontent.com"
	workflow     = "https://github.com/org/repo/.github/workflows/release.yml@refs/heads/main"
	googleIssuer = "https://accounts.google.com"
	mail         = "alice@example.com"
)

var ciIdentity = sigstoretest.Identity{Issuer: ghIssuer, Subject: workflow}

// keylessFormat is one way cosign stores a keyless signature.
type keylessFormat struct {
	name string
	sign func(t testing.TB, repo, digest string, ss *sigstoretest.Sigstore, id sigstoretest.Identity, o imagetest.KeylessOptions)
}

var keylessFormats = []keylessFormat{
	{"legacy", imagetest.SignLegacyKeyless},
	{"bundle", imagetest.SignBundleKeyless},
}

// ciRoot trusts the release workflow of org/repo, exactly.
var ciRoot = policy.TrustRoot{Name: "ci", Keyless: &policy.Keyless{Issuer: ghIssuer, Subject: workflow}}

// inlineHost is ss's material as a Connaisseur host block (inline PEM).
func inlineHost(t testing.TB, ss *sigstoretest.Sigstore) *policy.Host {
	t.Helper()
	return &policy.Host{FulcioCert: ss.ChainPEM(t), RekorPubkey: ss.RekorPublicKeyPEM(t), CTLogPubkey: ss.CTLogPublicKeyPEM(t)}
}

// keylessVerifier checks a cosign validator as the policy loader would
// (the section compiles the identities and parses the material) and
// builds its verifier.
func keylessVerifier(t testing.TB, reg *registry.Client, v policy.Validator) *Verifier {
	t.Helper()
	v.Name, v.Type = "keyless-test", policy.TypeCosign
	p := policy.Policy{
		Validators: []policy.Validator{v},
		Rules:      []policy.Rule{{Pattern: "*", Validator: v.Name, With: policy.With{TrustRoot: policy.AllTrustRoots}}},
	}
	if err := checkPolicy(&p); err != nil {
		t.Fatalf("policy: %v", err)
	}
	ver, err := New(&p.Validators[0], reg)
	if err != nil {
		t.Fatal(err)
	}
	return ver
}

func boolp(b bool) *bool { return &b }
