package integration

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nri-image-verifier/nri-image-verifier/internal/daemontest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
)

// indent makes a PEM block fit under a YAML block scalar.
func indent(pem string) string {
	return "      " + strings.ReplaceAll(strings.TrimSpace(pem), "\n", "\n      ")
}

type world struct {
	host, slowHost      string
	alice, bob, mallory *imagetest.Signer
	slow                *atomic.Int64 // delay per request to slowHost, in ms
	policyFile          string
}

func (w *world) policy() string {
	return fmt.Sprintf(`
validators:
- name: default
  type: cosign
  trustRoots:
  - name: alice
    key: |
%s
  - name: bob
    key: |
%s
policy:
- pattern: "%[3]s/*"
  with: {trustRoot: alice}
- pattern: "%[3]s/threshold/*"
  with: {trustRoot: "*", threshold: 2}
- pattern: "%[3]s/audited/*"
  with: {trustRoot: alice}
  mode: audit
- pattern: "%[4]s/*"
  with: {trustRoot: alice}
`, indent(w.alice.PublicKeyPEM()), indent(w.bob.PublicKeyPEM()), w.host, w.slowHost)
}

func newWorld(t *testing.T) *world {
	w := &world{
		host:    imagetest.StartRegistry(t),
		alice:   imagetest.NewSigner(t, imagetest.ECDSAP256),
		bob:     imagetest.NewSigner(t, imagetest.Ed25519),
		mallory: imagetest.NewSigner(t, imagetest.ECDSAP256),
		slow:    new(atomic.Int64),
	}
	srv := imagetest.StartRegistryServer(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			if d := time.Duration(w.slow.Load()) * time.Millisecond; d > 0 {
				select {
				case <-time.After(d):
				case <-r.Context().Done():
					return
				}
			}
			h.ServeHTTP(rw, r)
		})
	})
	w.slowHost = strings.TrimPrefix(srv.URL, "http://")
	w.policyFile = filepath.Join(t.TempDir(), "policy.yaml")
	writePolicy(t, w.policyFile, w.policy())
	return w
}

// TestGate drives container creations through NRI into the real daemon and
// checks each container's fate, the runtime's error and the audit line.
func TestGate(t *testing.T) {
	w := newWorld(t)
	h := w.host

	signedLegacy := imagetest.PushImageConfig(t, h+"/app/legacy:v1")
	imagetest.SignLegacy(t, h+"/app/legacy", signedLegacy.Digest, w.alice, imagetest.SignOptions{})
	signedBundle := imagetest.PushImageConfig(t, h+"/app/bundle:v1")
	imagetest.SignBundle(t, h+"/app/bundle", signedBundle.Digest, w.alice, imagetest.SignOptions{})
	unsigned := imagetest.PushImageConfig(t, h+"/app/unsigned:v1")
	wrongKey := imagetest.PushImageConfig(t, h+"/app/wrongkey:v1")
	imagetest.SignLegacy(t, h+"/app/wrongkey", wrongKey.Digest, w.mallory, imagetest.SignOptions{})
	replayed := imagetest.PushImageConfig(t, h+"/app/legacy:v2")
	imagetest.CopySignatures(t, h+"/app/legacy", signedLegacy.Digest, replayed.Digest)
	tampered := imagetest.PushImageConfig(t, h+"/app/tampered:v1")
	imagetest.SignLegacy(t, h+"/app/tampered", tampered.Digest, w.alice, imagetest.SignOptions{Tamper: true})
	oneOfTwo := imagetest.PushImageConfig(t, h+"/threshold/one:v1")
	imagetest.SignLegacy(t, h+"/threshold/one", oneOfTwo.Digest, w.alice, imagetest.SignOptions{})
	twoOfTwo := imagetest.PushImageConfig(t, h+"/threshold/two:v1")
	imagetest.SignLegacy(t, h+"/threshold/two", twoOfTwo.Digest, w.alice, imagetest.SignOptions{})
	imagetest.SignBundle(t, h+"/threshold/two", twoOfTwo.Digest, w.bob, imagetest.SignOptions{})
	index := imagetest.PushIndex(t, h+"/app/multi:v1")
	imagetest.SignLegacy(t, h+"/app/multi", index.Digest, w.alice, imagetest.SignOptions{})
	auditedUnsigned := imagetest.PushImageConfig(t, h+"/audited/app:v1")
	// The tag v1 was signed, then re-pointed to an unsigned build; the name
	// containerd reports is unchanged, the digest is the new one.
	repointed := imagetest.PushImageConfig(t, h+"/app/legacy:v3")

	rt := startRuntime(t)
	p := startPlugin(t, rt, w.policyFile)

	cases := []struct {
		name           string
		image          string // containerd's image record name
		digest, config string
		allowed        bool
		verdict        string
		errHas         []string
	}{
		{"signed legacy by tag", h + "/app/legacy:v1", signedLegacy.Digest, signedLegacy.ConfigDigest, true, "allow", nil},
		{"signed legacy by digest", h + "/app/legacy@" + signedLegacy.Digest, signedLegacy.Digest, signedLegacy.ConfigDigest, true, "allow", nil},
		{"signed bundle", h + "/app/bundle:v1", signedBundle.Digest, signedBundle.ConfigDigest, true, "allow", nil},
		{"multi-arch index signed on the index", h + "/app/multi:v1", index.Digest, index.Platforms[0].ConfigDigest, true, "allow", nil},
		{"two of two roots signed", h + "/threshold/two:v1", twoOfTwo.Digest, twoOfTwo.ConfigDigest, true, "allow", nil},
		{"unsigned", h + "/app/unsigned:v1", unsigned.Digest, unsigned.ConfigDigest, false, "deny",
			[]string{"nri-image-verifier", h + "/app/unsigned:v1", unsigned.Digest, h + "/*", "no cosign signature"}},
		{"signed with another key", h + "/app/wrongkey:v1", wrongKey.Digest, wrongKey.ConfigDigest, false, "deny", []string{"alice"}},
		{"signature of another digest", h + "/app/legacy:v2", replayed.Digest, replayed.ConfigDigest, false, "deny", []string{signedLegacy.Digest}},
		{"tampered payload", h + "/app/tampered:v1", tampered.Digest, tampered.ConfigDigest, false, "deny", nil},
		{"threshold not met", h + "/threshold/one:v1", oneOfTwo.Digest, oneOfTwo.ConfigDigest, false, "deny", []string{"threshold"}},
		{"config digest not of this image", h + "/app/legacy:v1", signedLegacy.Digest, unsigned.ConfigDigest, false, "deny", nil},
		{"by bare image ID", unsigned.ConfigDigest, unsigned.Digest, unsigned.ConfigDigest, false, "deny", []string{"repository"}},
		{"runtime sent no digest and containerd cannot be asked", h + "/app/legacy:v1", "", "", false, "deny", []string{"the image digest could not be found through containerd's socket", "no-containerd.sock"}},
		{"unsigned in audit mode", h + "/audited/app:v1", auditedUnsigned.Digest, auditedUnsigned.ConfigDigest, true, "audit-deny", nil},
		{"signed tag re-pointed to an unsigned digest", h + "/app/legacy:v1", repointed.Digest, repointed.ConfigDigest, false, "deny", []string{repointed.Digest}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id, err := rt.create("team-a", tc.image, tc.digest, tc.config)
			if tc.allowed != (err == nil) {
				t.Fatalf("allowed = %v, want %v (err: %v)", err == nil, tc.allowed, err)
			}
			for _, s := range tc.errHas {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error does not name %q: %v", s, err)
				}
			}
			line := p.auditLine(t, id)
			if line["verdict"] != tc.verdict || line["digest"] != tc.digest || line["namespace"] != "team-a" ||
				line["node"] != "it-node" || line["image"] != tc.image {
				t.Errorf("audit line: %v", line)
			}
			if !tc.allowed && !strings.Contains(err.Error(), fmt.Sprint(line["reason"])) {
				t.Errorf("runtime error %q does not carry the audit reason %q", err, line["reason"])
			}
		})
	}
}

// TestSlowAndDownRegistry: a registry slower than the deadline gets a
// pending deny, the verification finishes in the background, and a retry
// is allowed; a registry that is gone gets a deny naming the failure.
func TestSlowAndDownRegistry(t *testing.T) {
	w := newWorld(t)
	img := imagetest.PushImageConfig(t, w.slowHost+"/app:v1")
	imagetest.SignLegacy(t, w.slowHost+"/app", img.Digest, w.alice, imagetest.SignOptions{})

	rt := startRuntime(t)
	p := startPlugin(t, rt, w.policyFile, "--decision-timeout", "500ms")

	w.slow.Store(700)
	start := time.Now()
	id, err := rt.create("default", w.slowHost+"/app:v1", img.Digest, img.ConfigDigest)
	if err == nil || !strings.Contains(err.Error(), "still running") {
		t.Fatalf("slow registry: err = %v, want a pending deny", err)
	}
	if el := time.Since(start); el > 1500*time.Millisecond {
		t.Errorf("pending deny took %v, want about the 500ms decision timeout", el)
	}
	if line := p.auditLine(t, id); line["pending"] != true || line["verdict"] != "deny" {
		t.Errorf("audit line: %v", line)
	}
	w.slow.Store(0)
	deadline := time.Now().Add(wait)
	for {
		_, err = rt.create("default", w.slowHost+"/app:v1", img.Digest, img.ConfigDigest)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("retry never allowed: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// A registry that is down: a fresh digest cannot be verified.
	down := imagetest.StartRegistryServer(t, nil)
	downHost := strings.TrimPrefix(down.URL, "http://")
	other := imagetest.PushImageConfig(t, downHost+"/app:v1")
	down.Close()
	writePolicy(t, w.policyFile, strings.Replace(w.policy(), w.slowHost, downHost, 1))
	waitFor(t, func() bool { return strings.Contains(p.log(), "policy reloaded") })
	_, err = rt.create("default", downHost+"/app:v1", other.Digest, other.ConfigDigest)
	if err == nil || !strings.Contains(err.Error(), "verification failed") {
		t.Fatalf("registry down: err = %v, want a deny naming the failure", err)
	}
}

// TestPolicyReload: a broken policy is rejected and the last good one stays
// in force; a valid new one takes effect without a restart.
func TestPolicyReload(t *testing.T) {
	w := newWorld(t)
	img := imagetest.PushImageConfig(t, w.host+"/app:v1")
	imagetest.SignLegacy(t, w.host+"/app", img.Digest, w.alice, imagetest.SignOptions{})
	rt := startRuntime(t)
	p := startPlugin(t, rt, w.policyFile)

	if _, err := rt.create("default", w.host+"/app:v1", img.Digest, img.ConfigDigest); err != nil {
		t.Fatalf("signed image denied: %v", err)
	}
	writePolicy(t, w.policyFile, w.policy()+"\nbogus: field\n")
	waitFor(t, func() bool { return strings.Contains(p.log(), "policy reload rejected") })
	if !strings.Contains(p.log(), "bogus") {
		t.Errorf("rejection does not name the unknown field:\n%s", p.log())
	}
	if _, err := rt.create("default", w.host+"/app:v1", img.Digest, img.ConfigDigest); err != nil {
		t.Fatalf("after a broken reload the signed image is denied: %v", err)
	}
	// Now only bob's signature counts: alice's signed image is denied.
	writePolicy(t, w.policyFile, strings.Replace(w.policy(), "with: {trustRoot: alice}", "with: {trustRoot: bob}", 1))
	waitFor(t, func() bool { return strings.Contains(p.log(), "policy reloaded") })
	if _, err := rt.create("default", w.host+"/app:v1", img.Digest, img.ConfigDigest); err == nil {
		t.Fatal("after reload requiring bob, alice's signature still allowed the image")
	}
}

// TestRefusesToStartOnInvalidPolicy: the daemon does not start with a policy
// it cannot load, and says why.
func TestRefusesToStartOnInvalidPolicy(t *testing.T) {
	file := filepath.Join(t.TempDir(), "policy.yaml")
	os.WriteFile(file, []byte("validators: []\npolicy: []\n"), 0o600)
	out, err := exec.Command(daemontest.Binary(t), "run", "--policy", file, "--nri-socket", filepath.Join(t.TempDir(), "none.sock")).CombinedOutput()
	if err == nil {
		t.Fatalf("daemon started with an empty policy:\n%s", out)
	}
	if !strings.Contains(string(out), "validator") {
		t.Fatalf("error does not say what is wrong:\n%s", out)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
