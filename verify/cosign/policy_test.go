package cosign

import (
	"testing"

	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/nri-image-verifier/nri-image-verifier/verify"
	"github.com/nri-image-verifier/nri-image-verifier/verify/registry"
)

// Three roots; alice and bob sign (one format each), carol does not.
func TestThresholdAndRequired(t *testing.T) {
	host := imagetest.StartRegistry(t)
	repo := host + "/app"
	alice := imagetest.NewSigner(t, imagetest.ECDSAP256)
	bob := imagetest.NewSigner(t, imagetest.Ed25519)
	carol := imagetest.NewSigner(t, imagetest.ECDSAP384)
	v := newVerifier(t, newClient(t, registry.Options{}), root{"alice", alice}, root{"bob", bob}, root{"carol", carol})

	both := imagetest.PushImage(t, repo+":both")
	imagetest.SignLegacy(t, repo, both, alice, imagetest.SignOptions{})
	imagetest.SignBundle(t, repo, both, bob, imagetest.SignOptions{})
	onlyAlice := imagetest.PushImage(t, repo+":alice")
	imagetest.SignBundle(t, repo, onlyAlice, alice, imagetest.SignOptions{})

	for _, tc := range []struct {
		name    string
		digest  string
		with    policy.With
		allowed bool
		reason  string
	}{
		{"2 of 3 met", both, policy.With{TrustRoot: "*", Threshold: intp(2)}, true,
			"signed by trust roots [alice bob] (threshold 2)"},
		{"2 of 3 not met", onlyAlice, policy.With{TrustRoot: "*", Threshold: intp(2)}, false,
			"threshold 2 not met: signed by [alice]"},
		{"required missing", both, policy.With{TrustRoot: "*", Threshold: intp(2), Required: []string{"alice", "carol"}}, false,
			`missing required root "carol": signed by [alice bob] (threshold 2)`},
		{"threshold and required missing", onlyAlice, policy.With{TrustRoot: "*", Threshold: intp(2), Required: []string{"bob"}}, false,
			`threshold 2 not met: signed by [alice]; missing required root "bob"`},
		{"required only sets the threshold", both, policy.With{TrustRoot: "*", Required: []string{"alice", "bob"}}, true,
			"signed by trust roots [alice bob] (threshold 2)"},
		{"star needs all by default", both, policy.With{TrustRoot: "*"}, false,
			"threshold 3 not met: signed by [alice bob]"},
		{"named root signed", both, policy.With{TrustRoot: "bob"}, true,
			"signed by trust roots [bob] (threshold 1)"},
		{"named root did not sign", both, policy.With{TrustRoot: "carol"}, false,
			`2 signatures found, none verified with trust root "carol": `},
		{"default root missing", both, policy.With{}, false,
			`trust root "default" is not defined in cosign validator "cosign-test"`},
		{"zero threshold still needs a signature", imagetest.PushImage(t, repo+":unsigned"), policy.With{TrustRoot: "*", Threshold: intp(0)}, false,
			"no cosign signature found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := check(t, v, verify.Subject{Repository: repo, Digest: tc.digest}, tc.with)
			if got.Allowed != tc.allowed {
				t.Fatalf("allowed=%v, want %v (%s)", got.Allowed, tc.allowed, got.Reason)
			}
			if len(got.Reason) < len(tc.reason) || got.Reason[:len(tc.reason)] != tc.reason {
				t.Fatalf("reason %q, want it to start with %q", got.Reason, tc.reason)
			}
		})
	}

	// All three sign: "*" without threshold is met.
	imagetest.SignLegacy(t, repo, both, carol, imagetest.SignOptions{})
	wantAllowed(t, check(t, v, verify.Subject{Repository: repo, Digest: both}, policy.With{TrustRoot: "*"}), "alice", "bob", "carol")
}

func TestNewRejectsBadValidators(t *testing.T) {
	reg := newClient(t, registry.Options{})
	if _, err := New(&policy.Validator{Name: "empty", Type: policy.TypeCosign}, reg); err == nil {
		t.Error("a validator without trust roots was accepted")
	}
	keyless := &policy.Validator{Name: "keyless", Type: policy.TypeCosign, TrustRoots: []policy.TrustRoot{{Name: "default", Keyless: &policy.Keyless{Issuer: "x"}}}}
	if _, err := New(keyless, reg); err == nil {
		t.Error("a keyless trust root was accepted")
	}
	if _, err := New(newValidator(t, root{"default", imagetest.NewSigner(t, imagetest.ECDSAP256)}), nil); err == nil {
		t.Error("a nil registry client was accepted")
	}
}
