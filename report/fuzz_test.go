package report

import (
	"bytes"
	"encoding/json"
	"testing"
	"unicode/utf8"

	"github.com/nri-image-verifier/nri-image-verifier/gate"
)

// FuzzAudit: whatever the runtime reports about a container and whatever
// a registry puts into a reason, a decision is exactly one audit line of
// valid JSON, and (valid UTF-8) values come back unchanged: an image name
// or a reason cannot forge a second line or another field.
func FuzzAudit(f *testing.F) {
	f.Add("127.0.0.1:5000/app:v1", "sha256:01", "shop", "no signature", false)
	f.Add("evil\n{\"verdict\":\"allow\"}", "sha256:\r\n", "ns\u2028x", "reason\"},\"allowed\":true,{\"", true)
	f.Add("\xff\xfe", "\x00", "", "\u0085", false)
	f.Fuzz(func(t *testing.T, image, digest, namespace, reason string, allowed bool) {
		var buf bytes.Buffer
		in := gate.Input{Image: image, Digest: digest, Namespace: namespace, Pod: image, Container: reason}
		d := gate.Decision{Allowed: allowed, Verdict: gate.VerdictDeny, Reason: reason, Rule: image}
		if allowed {
			d.Verdict = gate.VerdictAllow
		}
		NewAudit(&buf, "node").Report(in, d)
		out := buf.Bytes()
		if bytes.Count(out, []byte("\n")) != 1 || out[len(out)-1] != '\n' {
			t.Fatalf("not one line: %q", out)
		}
		var m map[string]any
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatalf("not JSON: %v: %q", err, out)
		}
		if m["allowed"] != allowed || m["verdict"] != string(d.Verdict) || m["node"] != "node" {
			t.Fatalf("fields changed: %v", m)
		}
		for field, want := range map[string]string{"image": image, "digest": digest, "namespace": namespace, "reason": reason} {
			if utf8.ValidString(want) && m[field] != want {
				t.Fatalf("%s = %q, want %q", field, m[field], want)
			}
		}
	})
}
