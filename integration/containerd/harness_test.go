package containerd

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nri-image-verifier/nri-image-verifier/internal/testimage"
)

const (
	// requestTimeout is containerd's plugin_request_timeout (its default).
	// The plugin's own decision timeout (1.5s) stays below it.
	requestTimeout = 2 * time.Second
	// wait bounds every wait for a daemon or a container.
	wait = 30 * time.Second
)

// world is one containerd, its registry and nri-image-verifier, shared by
// every test of the package run (a cold containerd build takes minutes,
// a containerd start a second).
type world struct {
	dir      string // everything containerd writes or listens on
	bin      string
	cgroup   string // the pods' cgroup parent, in every hierarchy
	registry string // host:port
	key      *testimage.Signer
	policy   string
	audit    string // the plugin's audit log, kept across its restarts

	containerd *proc
	plugin     *proc
	cri        *CRI

	pause, signed, bundled, unsigned, audited Image
}

// needRoot fails (or skips, if the user asked) when the tests cannot run.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Getenv("NIV_SKIP_CONTAINERD") == "1" {
		t.Skip("NIV_SKIP_CONTAINERD=1: skipping the real-containerd end-to-end tests")
	}
	if os.Geteuid() != 0 {
		t.Fatal("the real-containerd end-to-end tests need root (containerd, runc, overlay mounts, cgroups). " +
			"Run them as root, or set NIV_SKIP_CONTAINERD=1 to skip them.")
	}
}

// newWorld installs (or finds cached) containerd and runc, builds the
// binaries, pushes and signs the images, starts containerd and the plugin,
// and arranges for all of it to be torn down when t ends.
func newWorld(t *testing.T) *world {
	t.Helper()
	needRoot(t)
	start := time.Now()
	if err := becomeSubreaper(); err != nil {
		t.Fatal(err)
	}
	ctrdDir := install(t)

	sweep(t)
	dir, err := os.MkdirTemp(runDirParent, runDirPrefix)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "owner"), strconv.Itoa(os.Getpid()))
	w := &world{dir: dir, bin: filepath.Join(dir, "bin"), cgroup: filepath.Base(dir),
		audit: filepath.Join(dir, "audit.jsonl")}
	t.Cleanup(func() { w.teardown(t) })
	tearDownOnSignal(t, dir)

	w.build(t)
	w.pushImages(t)
	w.startContainerd(t, ctrdDir)
	w.writePolicy(t)
	w.startPlugin(t)
	t.Logf("world ready in %v: containerd %s, registry %s, dir %s",
		time.Since(start).Round(time.Millisecond), ctrdDir, w.registry, dir)
	return w
}

// install runs hack/install-containerd.sh, the demo's installer: it builds
// containerd and the runc shim into a cache outside the clone (minutes,
// once) and installs runc from apt if missing.
func install(t *testing.T) string {
	t.Helper()
	start := time.Now()
	cmd := exec.Command("../../hack/install-containerd.sh")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("hack/install-containerd.sh: %v\n%s", err, stderr.String())
	}
	t.Logf("containerd and runc ready in %v%s", time.Since(start).Round(time.Millisecond),
		strings.TrimRight("\n"+stderr.String(), "\n"))
	return strings.TrimSpace(string(out))
}

func (w *world) build(t *testing.T) {
	t.Helper()
	run := func(env []string, args ...string) {
		cmd := exec.Command("go", args...)
		cmd.Env = append(os.Environ(), env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run(nil, "build", "-tags", "nri_no_wasm", "-o", w.bin+"/", "../../cmd/nri-image-verifier")
	// Static: the images hold this one file and nothing else.
	run([]string{"CGO_ENABLED=0"}, "build", "-trimpath", "-ldflags=-s -w", "-o", w.bin+"/", "../cmd/niv-sleep")
}

func (w *world) pushImages(t *testing.T) {
	t.Helper()
	program, err := os.ReadFile(filepath.Join(w.bin, "niv-sleep"))
	if err != nil {
		t.Fatal(err)
	}
	w.registry = testimage.StartRegistry(t)
	push := func(repo, say string) Image {
		img, err := PushRunnable(w.registry+repo, program, say)
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	w.pause = push("/e2e/pause:v1", "")
	w.signed = push("/e2e/signed:v1", "signed, cosign v2 .sig")
	w.bundled = push("/e2e/bundled:v1", "signed, cosign v3 bundle")
	w.unsigned = push("/e2e/unsigned:v1", "unsigned")
	w.audited = push("/e2e/audited/unsigned:v1", "unsigned, audit mode")
	w.key = testimage.NewSigner(t, testimage.ECDSAP256)
	testimage.SignLegacy(t, w.signed.Repo(), w.signed.Digest, w.key, testimage.SignOptions{})
	testimage.SignBundle(t, w.bundled.Repo(), w.bundled.Digest, w.key, testimage.SignOptions{})
}

// startContainerd renders hack/containerd-config.toml, the demo's config,
// for this world and starts containerd on it.
func (w *world) startContainerd(t *testing.T, ctrdDir string) {
	t.Helper()
	tmpl, err := os.ReadFile("../../hack/containerd-config.toml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.NewReplacer(
		"@DIR@", w.dir,
		"@PAUSE_IMAGE@", w.pause.Ref,
		"@NRI_REQUEST_TIMEOUT@", requestTimeout.String(),
	).Replace(string(tmpl))
	cfgPath := filepath.Join(w.dir, "containerd.toml")
	hosts := filepath.Join(w.dir, "certs.d", w.registry, "hosts.toml")
	if err := os.MkdirAll(filepath.Dir(hosts), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, hosts, fmt.Sprintf("server = %q\n\n[host.%[1]q]\n  capabilities = [\"pull\", \"resolve\"]\n",
		"http://"+w.registry))
	writeFile(t, cfgPath, cfg)

	// containerd finds the shim on PATH.
	p, err := startProc("containerd", filepath.Join(w.dir, "containerd.log"),
		[]string{"PATH=" + ctrdDir + ":" + os.Getenv("PATH")},
		filepath.Join(ctrdDir, "containerd"), "--config", cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	w.containerd = p
	if w.cri, err = DialCRI(w.socket()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(wait)
	for !fileExists(w.socket()) {
		if p.exited() || time.Now().After(deadline) {
			t.Fatalf("containerd did not start; its log:\n%s", p.tail(40))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := w.cri.WaitReady(context.Background(), wait); err != nil {
		t.Fatalf("%v; containerd's log:\n%s", err, p.tail(40))
	}
}

func (w *world) socket() string    { return filepath.Join(w.dir, "containerd.sock") }
func (w *world) nriSocket() string { return filepath.Join(w.dir, "nri.sock") }

// writePolicy: the registry's images must be signed with the key, except
// under /e2e/audited/, where a failure is only reported (audit mode).
func (w *world) writePolicy(t *testing.T) {
	t.Helper()
	key := "      " + strings.ReplaceAll(strings.TrimSpace(w.key.PublicKeyPEM()), "\n", "\n      ")
	w.policy = filepath.Join(w.dir, "policy.yaml")
	writeFile(t, w.policy, fmt.Sprintf(`validators:
- name: default
  type: cosign
  trustRoots:
  - name: e2e-key
    key: |
%s
policy:
- pattern: "%[2]s/*"
  with: {trustRoot: e2e-key}
- pattern: "%[2]s/e2e/audited/*"
  with: {trustRoot: e2e-key}
  mode: audit
`, key, w.registry))
	writeFile(t, filepath.Join(w.dir, "docker-config.json"), "{}")
}

// startPlugin starts nri-image-verifier and waits until containerd has
// registered it. It appends to the same log and audit log each time.
func (w *world) startPlugin(t *testing.T) {
	t.Helper()
	logPath := filepath.Join(w.dir, "plugin.log")
	before := strings.Count(readFile(logPath), `"connected to NRI runtime"`)
	p, err := startProc("nri-image-verifier", logPath, nil,
		filepath.Join(w.bin, "nri-image-verifier"), "run",
		"--policy", w.policy,
		"--nri-socket", w.nriSocket(),
		"--audit-log", w.audit,
		"--docker-config", filepath.Join(w.dir, "docker-config.json"),
		"--node-name", "e2e-node",
		"--log-level", "debug",
	)
	if err != nil {
		t.Fatal(err)
	}
	w.plugin = p
	w.waitConnected(t, before)
}

// waitConnected waits for the plugin's log to count more than before
// "connected to NRI runtime" lines: containerd has synchronised it and
// sends it container requests from now on.
func (w *world) waitConnected(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for strings.Count(w.plugin.logText(), `"connected to NRI runtime"`) <= before {
		if w.plugin.exited() || time.Now().After(deadline) {
			t.Fatalf("nri-image-verifier did not register with containerd; its log:\n%s\ncontainerd's:\n%s",
				w.plugin.tail(20), w.containerd.tail(20))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
