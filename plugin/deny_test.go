package plugin

import (
	"strings"
	"testing"

	"github.com/nri-image-verifier/nri-image-verifier/gate"
)

func TestVerdictError(t *testing.T) {
	in := gate.Input{Image: "127.0.0.1:5000/app:v1", Digest: testDigest}
	for _, tc := range []struct {
		name string
		in   gate.Input
		d    gate.Decision
		want string // "" means allowed
	}{{
		name: "allow",
		in:   in,
		d:    gate.Decision{Allowed: true, Verdict: gate.VerdictAllow},
	}, {
		name: "audit-mode denial is allowed",
		in:   in,
		d:    gate.Decision{Allowed: true, Verdict: gate.VerdictAuditDeny, Reason: "no signature"},
	}, {
		name: "deny",
		in:   in,
		d: gate.Decision{Verdict: gate.VerdictDeny, Image: "127.0.0.1:5000/app:v1", Rule: "127.0.0.1:5000/*",
			Validator: "cosign-prod", Reason: "no signature by root default"},
		want: `nri-image-verifier: image 127.0.0.1:5000/app:v1 (` + testDigest +
			`) denied by rule "127.0.0.1:5000/*" (validator cosign-prod): no signature by root default`,
	}, {
		name: "deny without rule, digest or image",
		in:   gate.Input{},
		d:    gate.Decision{Verdict: gate.VerdictDeny, Reason: "digest unknown"},
		want: `nri-image-verifier: image <unknown> (digest unknown) denied by rule "" (validator none): digest unknown`,
	}, {
		name: "pending",
		in:   in,
		d:    gate.Decision{Verdict: gate.VerdictDeny, Pending: true, Reason: "fetching signatures"},
		want: `nri-image-verifier: image 127.0.0.1:5000/app:v1 (` + testDigest +
			`): verification still running (fetching signatures); will be retried`,
	}, {
		name: "zero decision denies",
		in:   in,
		want: `nri-image-verifier: image 127.0.0.1:5000/app:v1 (` + testDigest + `) denied by rule "" (validator none): none`,
	}, {
		name: "control characters stay out of the message",
		in:   gate.Input{Image: "evil\nimage", Digest: testDigest},
		d:    gate.Decision{Rule: "a\nb", Validator: "v\r", Reason: "line1\nline2\u2028"},
		want: `nri-image-verifier: image evil image (` + testDigest + `) denied by rule "a\nb" (validator v ): line1 line2 `,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			err := verdictError(tc.in, tc.d)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("want allowed, got %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("want %q, got allowed", tc.want)
			}
			if err.Error() != tc.want {
				t.Errorf("message:\n got %s\nwant %s", err, tc.want)
			}
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Errorf("message is not one line: %q", err)
			}
		})
	}
}
