package gate

import (
	"context"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/nri-image-verifier/nri-image-verifier/imageref"
	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/nri-image-verifier/nri-image-verifier/verify"
)

// fuzzPolicy has a signature rule for everything, an allow-all rule for
// one repository path in one namespace, and an audit-mode rule.
const fuzzPolicy = `
validators:
- name: sig
  type: static
  approve: false
- name: open
  type: static
  approve: true
policy:
- pattern: "*"
  validator: sig
- pattern: "reg.io/public/*"
  validator: open
  namespaces: [trusted]
- pattern: "reg.io/audited/*"
  validator: sig
  mode: audit
`

// signedDigest is the one digest the fuzz "sig" validator vouches for.
const signedDigest = "sha256:5ec0000000000000000000000000000000000000000000000000000000000001"

// FuzzDecide: whatever the runtime reports (name, digest, config digest,
// namespace), the gate never panics, answers by its deadline, and allows
// only when the matching rule's validator vouched for exactly the digest
// and config it was given, or the rule is the open one for the namespace
// it is limited to, or the rule is in audit mode (flagged audit-deny). Its
// message stays one line, and a refusal always has a reason.
func FuzzDecide(f *testing.F) {
	f.Add("reg.io/app:v1", signedDigest, "", "default")
	f.Add("reg.io/app:v1", signedDigest, signedDigest, "default")
	f.Add("reg.io/app@"+signedDigest, dgst, "", "")
	f.Add("reg.io/public/app:v1", "", "", "trusted")
	f.Add("reg.io/public/app:v1", dgst, "", "other")
	f.Add("reg.io/audited/app", dgst, "", "x")
	f.Add(dgst, dgst, dgst, "default")
	f.Add("REG.IO/public/app", dgst, "", "trusted")
	f.Add("reg.io/app\nfoo", "sha256:\x00", "x|y", "ns\u2028")
	f.Add("", "", "", "")
	f.Fuzz(func(t *testing.T, image, digest, config, namespace string) {
		var got []verify.Subject
		build := func(v *policy.Validator) (verify.Verifier, error) {
			name := v.Name
			return verify.VerifierFunc(func(_ context.Context, s verify.Subject, _ policy.With) (verify.Verdict, error) {
				got = append(got, s)
				if name == "open" {
					return verify.Verdict{Allowed: true, Reason: "open"}, nil
				}
				ok := s.Digest == signedDigest && (s.ConfigDigest == "" || s.ConfigDigest == signedDigest)
				return verify.Verdict{Allowed: ok, Reason: "fuzz"}, nil
			}), nil
		}
		pol, err := policy.Parse([]byte(fuzzPolicy))
		if err != nil {
			t.Fatal(err)
		}
		g, err := New(pol, build, nil)
		if err != nil {
			t.Fatal(err)
		}
		in := Input{Image: image, Digest: digest, ConfigDigest: config, Namespace: namespace, Pod: "p", Container: "c"}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		start := time.Now()
		d := g.Decide(ctx, in)
		if el := time.Since(start); el > 900*time.Millisecond {
			t.Fatalf("Decide took %v", el)
		}

		msg := d.Message(in)
		for _, c := range msg {
			if unicode.IsControl(c) || unicode.In(c, unicode.Zl, unicode.Zp) {
				t.Fatalf("message holds %q: %q", c, msg)
			}
		}
		if !d.Allowed && (d.Reason == "" || msg == "" || d.Verdict != VerdictDeny) {
			t.Fatalf("refusal without reason, message or deny verdict: %+v", d)
		}
		if !d.Allowed {
			return
		}
		switch {
		case d.Verdict == VerdictAuditDeny:
			if d.Mode != policy.ModeAudit {
				t.Fatalf("audit-deny outside audit mode: %+v", d)
			}
		case d.Verdict != VerdictAllow:
			t.Fatalf("allowed with verdict %q", d.Verdict)
		case d.Validator == "open":
			if namespace != "trusted" || !strings.HasPrefix(d.Image, "reg.io/public/") {
				t.Fatalf("open rule allowed %q in namespace %q", d.Image, namespace)
			}
		default:
			// The validator was asked about exactly what the runtime
			// reported, and said yes.
			if len(got) != 1 || got[0].Digest != digest || got[0].ConfigDigest != config || digest != signedDigest {
				t.Fatalf("allowed %q (%q, %q) but the validator saw %+v", image, digest, config, got)
			}
			if repo, err := imageref.Repository(image); err != nil || got[0].Repository != repo {
				t.Fatalf("validator saw repository %q for image %q (%v)", got[0].Repository, image, err)
			}
		}
	})
}
