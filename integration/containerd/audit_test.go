package containerd

import (
	"bufio"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/nri-image-verifier/nri-image-verifier/internal/containerdtest"
)

// auditLine returns the audit line of container in pod, waiting for it
// (the plugin writes it before answering, so it is normally there).
func (w *world) auditLine(t *testing.T, pod, container string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		lines := w.auditLines(t, pod, container)
		if len(lines) > 1 {
			t.Fatalf("pod %s container %s has %d audit lines, want 1: %v", pod, container, len(lines), lines)
		}
		if len(lines) == 1 {
			return lines[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no audit line for pod %s container %s", pod, container)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (w *world) auditLines(t *testing.T, pod, container string) []map[string]any {
	t.Helper()
	var out []map[string]any
	f, err := os.Open(w.audit)
	if err != nil {
		return nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("audit line is not JSON: %v: %s", err, sc.Text())
		}
		if m["pod"] == pod && m["container"] == container {
			out = append(out, m)
		}
	}
	return out
}

// checkAudit checks an audit line against the image the container was
// made of and the expected verdict.
func checkAudit(t *testing.T, line map[string]any, img containerdtest.Image, verdict string, allowed bool) {
	t.Helper()
	t.Logf("audit: verdict %v, image %v, digest %v", line["verdict"], line["image"], line["digest"])
	// The image is the name of containerd's image record, the tag pulled,
	// whatever reference (tag, repo@digest, image ID) the container was
	// created by.
	if line["verdict"] != verdict || line["allowed"] != allowed || line["image"] != img.Ref || line["digest"] != img.Digest ||
		line["config_digest"] != img.ConfigDigest || line["namespace"] != "e2e" || line["node"] != "e2e-node" {
		t.Errorf("audit line: %v\nwant verdict %s, allowed %v, digest %s, config %s", line, verdict, allowed,
			img.Digest, img.ConfigDigest)
	}
}
