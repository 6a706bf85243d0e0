package report

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/nri-image-verifier/nri-image-verifier/gate"
)

func TestAuditLine(t *testing.T) {
	var buf bytes.Buffer
	a := NewAudit(&buf, "node-1")
	in := gate.Input{Image: "127.0.0.1:5000/app:v1", Digest: "sha256:aa", ConfigDigest: "sha256:bb",
		Namespace: "ns", Pod: "p", PodUID: "uid", Container: "c"}
	a.Report(in, gate.Decision{Verdict: gate.VerdictDeny, Reason: "no signature", Rule: "127.0.0.1:5000/*",
		Validator: "default", Mode: "enforce", Latency: 1500 * time.Microsecond})
	a.Report(in, gate.Decision{Allowed: true, Verdict: gate.VerdictAllow, CacheHit: true})

	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want 2:\n%s", len(lines), buf.String())
	}
	var got map[string]any
	if err := json.Unmarshal(lines[0], &got); err != nil {
		t.Fatalf("line is not JSON: %v\n%s", err, lines[0])
	}
	want := map[string]any{
		"level": "WARN", "node": "node-1", "namespace": "ns", "pod": "p", "pod_uid": "uid",
		"container": "c", "image": "127.0.0.1:5000/app:v1", "digest": "sha256:aa",
		"config_digest": "sha256:bb", "rule": "127.0.0.1:5000/*", "validator": "default",
		"mode": "enforce", "verdict": "deny", "allowed": false, "reason": "no signature",
		"latency_ms": 1.5, "cache_hit": false,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if _, ok := got["time"]; !ok {
		t.Errorf("no time field")
	}
	if _, ok := got["volume"]; ok {
		t.Errorf("the container's own image has a volume field: %v", got)
	}
	if err := json.Unmarshal(lines[1], &got); err != nil || got["level"] != "INFO" || got["cache_hit"] != true {
		t.Errorf("allow line: %v %v", err, got)
	}
}

// TestAuditLineImageVolume: an image volume's image has its own line,
// naming the mount.
func TestAuditLineImageVolume(t *testing.T) {
	var buf bytes.Buffer
	a := NewAudit(&buf, "node-1")
	a.Report(gate.Input{Image: "127.0.0.1:5000/tools:v1", Digest: "sha256:aa", Volume: "/tools", Pod: "p", Container: "c"},
		gate.Decision{Verdict: gate.VerdictDeny, Reason: "no signature"})
	var got map[string]any
	if err := json.Unmarshal(bytes.TrimSpace(buf.Bytes()), &got); err != nil {
		t.Fatal(err)
	}
	if got["volume"] != "/tools" || got["image"] != "127.0.0.1:5000/tools:v1" || got["verdict"] != "deny" {
		t.Errorf("line %v, want volume /tools", got)
	}
}
