package gate

import (
	"strings"
	"testing"
)

const testDigest = "sha256:9a3e5cbcd2c6ac1a7b1cf4b8e3e1b5c0c4f5d7e5f9d2b9c1e0f4a6b7c8d9e0f1"

func TestMessage(t *testing.T) {
	in := Input{Image: "127.0.0.1:5000/app:v1", Digest: testDigest}
	for _, tc := range []struct {
		name string
		in   Input
		d    Decision
		want string
	}{{
		name: "allow has no message",
		in:   in,
		d:    Decision{Allowed: true, Verdict: VerdictAllow, Reason: "signed"},
	}, {
		name: "deny",
		in:   in,
		d: Decision{Verdict: VerdictDeny, Image: "127.0.0.1:5000/app:v1", Rule: "127.0.0.1:5000/*",
			Validator: "cosign-prod", Reason: "no signature by root default"},
		want: `nri-image-verifier: image 127.0.0.1:5000/app:v1 (` + testDigest +
			`) denied by rule "127.0.0.1:5000/*" (validator cosign-prod): no signature by root default`,
	}, {
		name: "image volume: names the mount, a control character and a % cannot break the line",
		in:   Input{Image: "127.0.0.1:5000/tools:v1", Digest: testDigest, Volume: "/tools\n%s"},
		d: Decision{Verdict: VerdictDeny, Image: "127.0.0.1:5000/tools:v1", Rule: "127.0.0.1:5000/*",
			Validator: "default", Reason: "no cosign signature"},
		want: `nri-image-verifier: image volume /tools %s: image 127.0.0.1:5000/tools:v1 (` + testDigest +
			`) denied by rule "127.0.0.1:5000/*" (validator default): no cosign signature`,
	}, {
		name: "audit-mode would-be denial says it was allowed",
		in:   in,
		d: Decision{Allowed: true, Verdict: VerdictAuditDeny, Rule: "*", Validator: "default",
			Reason: "no cosign signature"},
		want: `nri-image-verifier: image 127.0.0.1:5000/app:v1 (` + testDigest +
			`) would be denied by rule "*" (validator default, audit mode, allowed): no cosign signature`,
	}, {
		name: "pending",
		in:   in,
		d:    Decision{Verdict: VerdictDeny, Pending: true, Reason: "fetching signatures"},
		want: `nri-image-verifier: image 127.0.0.1:5000/app:v1 (` + testDigest +
			`): verification still running (fetching signatures); will be retried`,
	}, {
		name: "allowed wins over pending",
		in:   in,
		d:    Decision{Allowed: true, Verdict: VerdictAllow, Pending: true},
	}, {
		name: "zero decision denies",
		in:   Input{},
		want: `nri-image-verifier: image <unknown> (digest unknown) denied by rule "" (validator none): none`,
	}, {
		name: "control characters stay out",
		in:   Input{Image: "evil\nimage", Digest: testDigest},
		d:    Decision{Allowed: true, Verdict: VerdictAuditDeny, Validator: "v\r", Reason: "a\u2028b"},
		want: `nri-image-verifier: image evil image (` + testDigest + `) would be denied by rule "" (validator v , audit mode, allowed): a b`,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.d.Message(tc.in)
			if got != tc.want {
				t.Errorf("Message:\n got %q\nwant %q", got, tc.want)
			}
			if strings.ContainsAny(got, "\r\n") {
				t.Errorf("message is not one line: %q", got)
			}
		})
	}
}
