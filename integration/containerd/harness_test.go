// Package containerd is the real-containerd end of the integration tests:
// containerd v2.4 (and v2.2, which sends no image digest through NRI) with
// NRI and the fail-closed default validator, runc, a loopback registry, the
// nri-image-verifier binary, all driven through the CRI API as kubelet
// drives them. The world they run in comes from internal/containerdtest
// and internal/daemontest.
package containerd

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nri-image-verifier/nri-image-verifier/internal/containerdtest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/daemontest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
)

const (
	// requestTimeout is containerd's plugin_request_timeout (its default).
	// The plugin's own decision timeout (1.5s) stays below it.
	requestTimeout = 2 * time.Second
	// wait bounds every wait for a daemon or a container.
	wait = 30 * time.Second
	// errorTTL is the plugin's --cache-error-ttl: how long a registry
	// failure is remembered (default 5s), short here so that the
	// registry-outage case's retry does not wait long.
	errorTTL = time.Second
)

// release is a containerd version the suite runs against.
type release struct {
	version string
	// digestFromNRI: containerd >= 2.4 sends Container.Image (name, digest,
	// config digest) through NRI. Older ones do not, and the plugin reads
	// containerd's image store over --containerd-socket instead
	// (containerd/resolve), from the CRI image-name annotation.
	digestFromNRI bool
}

var (
	v24 = release{version: "v2.4.2", digestFromNRI: true}
	v22 = release{version: "v2.2.9", digestFromNRI: false}
)

// world is one containerd release, its registry and nri-image-verifier,
// shared by every subtest of one top-level test: one world per release
// per package run (a cold containerd build takes minutes, a containerd
// start a second).
type world struct {
	rel      release
	dir      string // everything containerd writes or listens on
	ctrdDir  string // containerd and its shim
	cgroup   string // the pods' cgroup parent, in every hierarchy
	registry string // host:port
	faults   *registryFaults
	program  []byte // niv-sleep, the images' one file
	// key is the policy's trust root e2e-key; key2 its second root,
	// e2e-key-2, which only the threshold rule asks for.
	key, key2 *imagetest.Signer
	policy    string
	audit     string // the plugin's audit log, kept across its restarts
	// pluginFlags are added to the plugin's command line at its next
	// start (restartPlugin sets them).
	pluginFlags []string

	containerd *containerdtest.Proc
	plugin     *daemontest.Daemon
	cri        *containerdtest.CRI

	pause, signed, bundled, unsigned, audited containerdtest.Image
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
// binaries (once per test process), pushes and signs the images, starts containerd and the plugin,
// and arranges for all of it to be torn down when t ends.
func newWorld(t *testing.T, rel release) *world {
	t.Helper()
	needRoot(t)
	start := time.Now()
	if err := containerdtest.BecomeSubreaper(); err != nil {
		t.Fatal(err)
	}
	ctrdDir := containerdtest.Install(t, rel.version)

	containerdtest.Sweep(t, filepath.Join(runDirParent, runDirPrefix+"*"), containerdtest.CleanDir)
	dir, err := os.MkdirTemp(runDirParent, runDirPrefix)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "owner"), strconv.Itoa(os.Getpid()))
	w := &world{rel: rel, dir: dir, ctrdDir: ctrdDir, cgroup: filepath.Base(dir),
		audit: filepath.Join(dir, "audit.jsonl")}
	t.Cleanup(func() { w.teardown(t) })
	containerdtest.TearDownOnSignal(t, dir, containerdtest.CleanDir)

	daemontest.Binary(t) // built before anything runs
	w.pushImages(t)
	w.writeContainerdConfig(t)
	if err := containerdtest.NoteMadeDirs(dir); err != nil {
		t.Fatal(err)
	}
	w.startContainerd(t)
	w.checkConfigKeys(t)
	w.writePolicy(t)
	w.startPlugin(t)
	t.Logf("world ready in %v: containerd %s, registry %s, dir %s",
		time.Since(start).Round(time.Millisecond), ctrdDir, w.registry, dir)
	return w
}

func (w *world) pushImages(t *testing.T) {
	t.Helper()
	var err error
	if w.program, err = containerdtest.Program(); err != nil {
		t.Fatal(err)
	}
	w.faults = &registryFaults{}
	srv := imagetest.StartRegistryServer(t, w.faults.wrap)
	w.registry = strings.TrimPrefix(srv.URL, "http://")
	// Held requests must end before the server's Close, which waits for them.
	t.Cleanup(w.faults.healAll)
	w.pause = w.push(t, "/e2e/pause:v1", "")
	w.signed = w.push(t, "/e2e/signed:v1", "signed, cosign v2 .sig")
	w.bundled = w.push(t, "/e2e/bundled:v1", "signed, cosign v3 bundle")
	w.unsigned = w.push(t, "/e2e/unsigned:v1", "unsigned")
	w.audited = w.push(t, "/e2e/audited/unsigned:v1", "unsigned, audit mode")
	w.key = imagetest.NewSigner(t, imagetest.ECDSAP256)
	w.key2 = imagetest.NewSigner(t, imagetest.ECDSAP256)
	imagetest.SignLegacy(t, w.signed.Repo(), w.signed.Digest, w.key, imagetest.SignOptions{})
	imagetest.SignBundle(t, w.bundled.Repo(), w.bundled.Digest, w.key, imagetest.SignOptions{})
}

// push pushes a runnable image to the world's registry at repoTag
// ("/path:tag"); its container prints say.
func (w *world) push(t *testing.T, repoTag, say string) containerdtest.Image {
	t.Helper()
	var args []string
	if say != "" {
		args = []string{say}
	}
	img, err := containerdtest.PushRunnable(w.registry+repoTag, w.program, args...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// writeContainerdConfig renders hack/containerd-config.toml, the demo's
// config, for this world; the same file serves every containerd release.
func (w *world) writeContainerdConfig(t *testing.T) {
	t.Helper()
	if _, err := containerdtest.WriteConfig(w.dir, w.pause.Ref, w.registry, requestTimeout, nil); err != nil {
		t.Fatal(err)
	}
	var err error
	if w.cri, err = containerdtest.DialCRI(w.socket()); err != nil {
		t.Fatal(err)
	}
}

// startContainerd starts containerd on the world's config and waits for
// its CRI services. The CRI client reconnects across restarts.
func (w *world) startContainerd(t *testing.T) {
	t.Helper()
	p, err := containerdtest.StartContainerd(w.ctrdDir, w.configPath(), w.socket(), filepath.Join(w.dir, "containerd.log"), w.cri, wait)
	if err != nil {
		t.Fatal(err)
	}
	w.containerd = p
}

// restartContainerd stops containerd (SIGTERM: containers and their shims
// keep running, as on a node whose containerd is upgraded) and starts it
// again on the same config, state and sockets.
func (w *world) restartContainerd(t *testing.T) {
	t.Helper()
	if err := w.containerd.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.containerd.Done():
	case <-time.After(wait):
		t.Fatalf("containerd did not stop on SIGTERM; its log:\n%s", w.containerd.Tail(20))
	}
	// Its sockets go with it; startContainerd waits for the new one.
	os.Remove(w.socket())
	w.startContainerd(t)
}

// checkConfigKeys fails the test if containerd ignored a key of
// hack/containerd-config.toml, which it does with only a warning: every
// key must mean something to every release the file is for, except the
// shim manager's socket_dir, which containerd < 2.3 does not know (it puts
// shim sockets in /run/containerd/s; see CleanDir).
func (w *world) checkConfigKeys(t *testing.T) {
	t.Helper()
	for _, line := range strings.Split(w.containerd.LogText(), "\n") {
		if !strings.Contains(line, "unknown key") {
			continue
		}
		if w.rel.version < "v2.3" && strings.Contains(line, "key=socket_dir plugin=io.containerd.shim.v1.manager") {
			continue
		}
		t.Errorf("containerd %s ignores a key of hack/containerd-config.toml: %s", w.rel.version, line)
	}
}

// registryPort is the port of the world's registry on 127.0.0.1.
func (w *world) registryPort() string {
	_, port, _ := strings.Cut(w.registry, ":")
	return port
}

func (w *world) configPath() string { return filepath.Join(w.dir, "containerd.toml") }

func (w *world) socket() string    { return filepath.Join(w.dir, "containerd.sock") }
func (w *world) nriSocket() string { return filepath.Join(w.dir, "nri.sock") }

// writePolicy: the registry's images must be signed with the key, except
// under /e2e/audited/, where a failure is only reported (audit mode), and
// under /e2e/threshold/, where both keys must have signed.
func (w *world) writePolicy(t *testing.T) {
	t.Helper()
	indent := func(s *imagetest.Signer) string {
		return "      " + strings.ReplaceAll(strings.TrimSpace(s.PublicKeyPEM()), "\n", "\n      ")
	}
	w.policy = filepath.Join(w.dir, "policy.yaml")
	writeFile(t, w.policy, fmt.Sprintf(`validators:
- name: default
  type: cosign
  trustRoots:
  - name: e2e-key
    key: |
%s
  - name: e2e-key-2
    key: |
%s
policy:
- pattern: "%[3]s/*"
  with: {trustRoot: e2e-key}
- pattern: "%[3]s/e2e/audited/*"
  with: {trustRoot: e2e-key}
  mode: audit
- pattern: "%[3]s/e2e/threshold/*"
  with: {trustRoot: "*", threshold: 2}
- pattern: "localhost:%[4]s/*"
  with: {trustRoot: e2e-key}
`, indent(w.key), indent(w.key2), w.registry, w.registryPort()))
	writeFile(t, filepath.Join(w.dir, "docker-config.json"), "{}")
}

// startPlugin starts nri-image-verifier and waits until containerd has
// registered it. The audit log is the same file each time.
//
// On containerd >= 2.4 the containerd-socket fallback is off, so that the
// suite proves the digest comes from NRI; on older releases it is how the
// plugin learns the digest at all.
func (w *world) startPlugin(t *testing.T) {
	t.Helper()
	ctrdSocket := ""
	if !w.rel.digestFromNRI {
		ctrdSocket = w.socket()
	}
	args := []string{"run",
		"--policy", w.policy,
		"--nri-socket", w.nriSocket(),
		"--containerd-socket", ctrdSocket,
		"--audit-log", w.audit,
		"--docker-config", filepath.Join(w.dir, "docker-config.json"),
		"--cache-error-ttl", errorTTL.String(),
		"--node-name", "e2e-node",
		"--log-level", "debug",
	}
	// Not tied to t: the plugin outlives the subtest that (re)starts it;
	// the world's teardown stops it.
	p, err := daemontest.Start(daemontest.Options{Binary: daemontest.Binary(t),
		Args: append(args, w.pluginFlags...), Grace: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	w.plugin = p
	w.waitConnected(t, 0)
}

// restartPlugin stops the plugin as a DaemonSet rollout does (SIGTERM),
// waits until containerd has seen its connection close, so that no
// request goes to the old one, and starts it again with flags added to
// its command line.
func (w *world) restartPlugin(t *testing.T, flags ...string) {
	t.Helper()
	closed := func() int {
		n := 0
		for _, line := range strings.Split(w.containerd.LogText(), "\n") {
			if strings.Contains(line, "connection to plugin") && strings.Contains(line, "closed") {
				n++
			}
		}
		return n
	}
	if !w.plugin.Exited() {
		before := closed()
		w.plugin.Stop()
		deadline := time.Now().Add(wait)
		for closed() <= before {
			if time.Now().After(deadline) {
				t.Fatalf("containerd did not see the stopped plugin's connection close; its log:\n%s", w.containerd.Tail(20))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	w.pluginFlags = flags
	w.startPlugin(t)
}

// waitConnected waits for the plugin's log to count more than before
// "connected to NRI runtime" lines: containerd has synchronised it and
// sends it container requests from now on.
func (w *world) waitConnected(t *testing.T, before int) {
	t.Helper()
	if err := w.plugin.WaitLog(daemontest.ConnectedLine, before, wait); err != nil {
		t.Fatalf("nri-image-verifier did not register with containerd: %v\ncontainerd's log:\n%s",
			err, w.containerd.Tail(20))
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

func TestMain(m *testing.M) {
	code := m.Run()
	daemontest.Cleanup()
	os.Exit(code)
}
