package containerd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
)

// caseFoldCases: containerd keeps a registry host's case, so `localhost:P/x:1`
// and `LOCALHOST:P/x:1` are two records, which a tenant can fill with two
// images by pulling the tag twice while its registry moves it (first a copy
// of a signed image, then its own). The v2.2 fallback must check each
// container at the digest of its own record; it once folded the host's case
// and checked the second as the first. Here both names reach the world's
// registry (a hosts.toml each), and the policy's rule for localhost:P covers
// both (rules fold the host).
func (w *world) caseFoldCases(t *testing.T) {
	lower, upper := "localhost:"+w.registryPort(), "LOCALHOST:"+w.registryPort()
	for _, host := range []string{lower, upper} {
		dir := filepath.Join(w.dir, "certs.d", host)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, "hosts.toml"), `server = "http://`+w.registry+`"`+"\n\n[host.\"http://"+w.registry+"\"]\n  capabilities = [\"pull\", \"resolve\"]\n")
	}
	signed := w.push(t, "/e2e/case:1", "signed, pulled under the lower-case host")
	imagetest.SignLegacy(t, signed.Repo(), signed.Digest, w.key, imagetest.SignOptions{})
	signed.Ref = lower + "/e2e/case:1"
	w.pull(t, signed)
	unsigned := w.push(t, "/e2e/case:1", "unsigned, pulled under the upper-case host")
	unsigned.Ref = upper + "/e2e/case:1"
	w.pull(t, unsigned)

	t.Run("the upper-case record (unsigned): refused at its own digest", func(t *testing.T) {
		pod := w.runPod(t, "case-upper")
		msg := w.expectRefusedByContainerd(t, pod, "app", unsigned.Ref)
		if !strings.Contains(msg, unsigned.Digest) || !strings.Contains(msg, noSignature) {
			t.Errorf("refusal does not name the unsigned record's digest %s and a missing signature: %s", unsigned.Digest, msg)
		}
	})
	t.Run("the lower-case record (signed): allowed and runs", func(t *testing.T) {
		w.expectRuns(t, "case-lower", signed.Ref, signed, "allow")
	})
}
