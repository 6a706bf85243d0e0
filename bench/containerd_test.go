package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	ctrd "github.com/nri-image-verifier/nri-image-verifier/internal/containerdtest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/testimage"
)

// realWorld is a real containerd (v2.4, hack/install-containerd.sh, the
// demo's config) with the nri-image-verifier binary as its NRI validator,
// in a directory of its own, on a loopback registry.
type realWorld struct {
	dir, bin   string
	registry   string
	signer     *testimage.Signer
	program    []byte
	containerd *exec.Cmd
	daemon     *exec.Cmd
	audit      string
	cri        *ctrd.CRI
	pod        ctrd.Pod
}

type prewarmPhase struct {
	prewarm                 bool
	creates, cached, wrong  int
	joined                  int // waited on a verification already running
	createLatency, hookTime durations
}

type prewarmResult struct {
	skipped string
	phases  []prewarmPhase
}

// benchPrewarm: for each of n fresh images, pull it through the CRI and at
// once create a container of it, as kubelet does; the audit log says which
// creates found their verdict cached. Once with --prewarm, once (on other
// images) without.
func benchPrewarm(t *testing.T, n int) prewarmResult {
	if os.Getenv("NIV_SKIP_CONTAINERD") == "1" {
		return prewarmResult{skipped: "NIV_SKIP_CONTAINERD=1"}
	}
	if os.Geteuid() != 0 {
		return prewarmResult{skipped: "needs root (containerd, runc, overlay mounts)"}
	}
	w := startRealWorld(t)
	var res prewarmResult
	for _, prewarm := range []bool{true, false} {
		w.startDaemon(t, prewarm)
		ph := prewarmPhase{prewarm: prewarm}
		for i := range n {
			signed := i%5 != 4 // one in five unsigned
			ref := fmt.Sprintf("%s/pw-%v/app%d:v1", w.registry, prewarm, i)
			img, err := ctrd.PushRunnable(ref, w.program, fmt.Sprint("app ", i))
			if err != nil {
				t.Fatal(err)
			}
			if signed {
				if i%3 == 2 {
					testimage.SignBundle(t, img.Repo(), img.Digest, w.signer, testimage.SignOptions{})
				} else {
					testimage.SignLegacy(t, img.Repo(), img.Digest, w.signer, testimage.SignOptions{})
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			id, err := w.cri.Pull(ctx, ref)
			if err != nil {
				cancel()
				t.Fatal(err)
			}
			name := fmt.Sprintf("pw-%v-%d", prewarm, i)
			t0 := time.Now()
			// As kubelet >= 1.29: the image ID it pulled, and the pod
			// spec's image string.
			_, err = w.cri.CreateContainerOf(ctx, w.pod, name, &cri.ImageSpec{Image: id, UserSpecifiedImage: ref})
			ph.createLatency = append(ph.createLatency, time.Since(t0))
			cancel()
			ph.creates++
			if (err == nil) != signed {
				ph.wrong++
				t.Errorf("%s (signed %v): %v", ref, signed, err)
			}
		}
		// The audit lines of this phase's containers.
		lines := w.auditLines(t)
		for i := range n {
			l, ok := lines[fmt.Sprintf("pw-%v-%d", prewarm, i)]
			if !ok {
				t.Errorf("no audit line for container %d", i)
				continue
			}
			ph.hookTime = append(ph.hookTime, time.Duration(l.LatencyMS*float64(time.Millisecond)))
			if l.CacheHit {
				ph.cached++
			} else if prewarm {
				ph.joined++
			}
		}
		res.phases = append(res.phases, ph)
		w.stopDaemon(t)
	}
	return res
}

type auditLine struct {
	Container string  `json:"container"`
	CacheHit  bool    `json:"cache_hit"`
	LatencyMS float64 `json:"latency_ms"`
	Verdict   string  `json:"verdict"`
}

func (w *realWorld) auditLines(t *testing.T) map[string]auditLine {
	f, err := os.Open(w.audit)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]auditLine{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l auditLine
		if json.Unmarshal(sc.Bytes(), &l) == nil && l.Container != "" {
			out[l.Container] = l
		}
	}
	return out
}

func startRealWorld(t *testing.T) *realWorld {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("../hack/install-containerd.sh").Output()
	if err != nil {
		t.Fatalf("hack/install-containerd.sh: %v", err)
	}
	ctrdDir := strings.TrimSpace(string(out))
	dir, err := os.MkdirTemp("/tmp", "niv-bench-ctrd-")
	if err != nil {
		t.Fatal(err)
	}
	w := &realWorld{dir: dir, bin: filepath.Join(dir, "bin"), audit: filepath.Join(dir, "audit.jsonl")}
	t.Cleanup(func() { w.teardown(t) })

	for _, b := range []struct {
		env  []string
		args []string
	}{
		{nil, []string{"build", "-tags", "nri_no_wasm", "-trimpath", "-o", w.bin + "/", "../cmd/nri-image-verifier"}},
		{[]string{"CGO_ENABLED=0"}, []string{"build", "-trimpath", "-ldflags=-s -w", "-o", w.bin + "/", "../internal/containerdtest/cmd/niv-sleep"}},
	} {
		cmd := exec.Command("go", b.args...)
		cmd.Env = append(os.Environ(), b.env...)
		if o, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %v: %v\n%s", b.args, err, o)
		}
	}
	if w.program, err = os.ReadFile(filepath.Join(w.bin, "niv-sleep")); err != nil {
		t.Fatal(err)
	}
	w.registry = testimage.StartRegistry(t)
	w.signer = testimage.NewSigner(t, testimage.ECDSAP256)
	pause, err := ctrd.PushRunnable(w.registry+"/bench/pause:v1", w.program)
	if err != nil {
		t.Fatal(err)
	}

	tmpl, err := os.ReadFile("../hack/containerd-config.toml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.NewReplacer("@DIR@", dir, "@PAUSE_IMAGE@", pause.Ref, "@NRI_REQUEST_TIMEOUT@", "2s").Replace(string(tmpl))
	hosts := filepath.Join(dir, "certs.d", w.registry, "hosts.toml")
	must(t, os.MkdirAll(filepath.Dir(hosts), 0o755))
	must(t, os.WriteFile(hosts, []byte(fmt.Sprintf("server = %q\n\n[host.%[1]q]\n  capabilities = [\"pull\", \"resolve\"]\n", "http://"+w.registry)), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "containerd.toml"), []byte(cfg), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(policySource(w.registry, w.signer)), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "docker-config.json"), []byte("{}"), 0o644))

	log, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	w.containerd = exec.Command(filepath.Join(ctrdDir, "containerd"), "--config", filepath.Join(dir, "containerd.toml"))
	w.containerd.Env = append(os.Environ(), "PATH="+ctrdDir+":"+os.Getenv("PATH"))
	w.containerd.Stdout, w.containerd.Stderr = log, log
	if err := w.containerd.Start(); err != nil {
		t.Fatal(err)
	}
	if w.cri, err = ctrd.DialCRI(filepath.Join(dir, "containerd.sock")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for !exists(filepath.Join(dir, "containerd.sock")) {
		if ctx.Err() != nil {
			t.Fatal("containerd did not start")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := w.cri.WaitReady(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	// The pod: its sandbox is created without the plugin's say, but a
	// required plugin must be connected for containers, so the daemon
	// starts first.
	w.startDaemon(t, false)
	if w.pod, err = w.cri.RunHostPod(ctx, ctrd.PodSpec{Namespace: "bench", Name: "prewarm", LogDir: filepath.Join(dir, "logs"),
		CgroupParent: "/" + filepath.Base(dir)}); err != nil {
		t.Fatal(err)
	}
	w.stopDaemon(t)
	return w
}

func (w *realWorld) startDaemon(t *testing.T, prewarm bool) {
	t.Helper()
	logPath := filepath.Join(w.dir, "daemon.log")
	before := strings.Count(readString(logPath), `"connected to NRI runtime"`)
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	args := []string{"run", "--policy", filepath.Join(w.dir, "policy.yaml"),
		"--nri-socket", filepath.Join(w.dir, "nri.sock"), "--audit-log", w.audit,
		"--docker-config", filepath.Join(w.dir, "docker-config.json"), "--node-name", "bench",
		"--containerd-socket", filepath.Join(w.dir, "containerd.sock"), "--events=false", "--log-level", "debug"}
	if prewarm {
		args = append(args, "--prewarm")
	}
	w.daemon = exec.Command(filepath.Join(w.bin, "nri-image-verifier"), args...)
	w.daemon.Stdout, w.daemon.Stderr = log, log
	if err := w.daemon.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(readString(logPath), `"connected to NRI runtime"`) <= before {
		if time.Now().After(deadline) {
			t.Fatalf("the daemon did not connect to containerd; its log:\n%s", readString(logPath))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (w *realWorld) stopDaemon(t *testing.T) {
	if w.daemon == nil {
		return
	}
	w.daemon.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { w.daemon.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		w.daemon.Process.Kill()
		<-done
	}
	w.daemon = nil
}

// teardown removes the pod through the CRI, stops the daemon and
// containerd (by PID), then kills what is left of this run (processes
// naming its directory: shims), unmounts, removes its cgroups and the
// directory.
func (w *realWorld) teardown(t *testing.T) {
	if w.cri != nil && w.pod.ID != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := w.cri.RemovePod(ctx, w.pod); err != nil {
			t.Logf("teardown: %v", err)
		}
		cancel()
	}
	w.stopDaemon(t)
	if w.cri != nil {
		w.cri.Close()
	}
	if w.containerd != nil && w.containerd.Process != nil {
		w.containerd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { w.containerd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			w.containerd.Process.Kill()
			<-done
		}
	}
	for _, pid := range ctrd.PIDsNaming(w.dir) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	time.Sleep(100 * time.Millisecond)
	reapZombies()
	var errs []error
	if ms, err := mountsUnder(w.dir); err == nil {
		for _, m := range ms {
			if unix.Unmount(m, 0) != nil {
				if err := unix.Unmount(m, unix.MNT_DETACH); err != nil {
					errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
				}
			}
		}
	}
	name := filepath.Base(w.dir)
	tops, _ := filepath.Glob("/sys/fs/cgroup/" + name)
	more, _ := filepath.Glob("/sys/fs/cgroup/*/" + name)
	for _, top := range append(tops, more...) {
		var dirs []string
		filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := unix.Rmdir(dirs[i]); err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("rmdir %s: %w", dirs[i], err))
			}
		}
	}
	if t.Failed() {
		t.Logf("daemon log:\n%s", tail(readString(filepath.Join(w.dir, "daemon.log")), 30))
		t.Logf("containerd log:\n%s", tail(readString(filepath.Join(w.dir, "containerd.log")), 30))
	}
	if err := os.RemoveAll(w.dir); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		t.Error(err)
	}
}

// reapZombies waits for exited shims adopted by this process (the
// subreaper).
func reapZombies() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}

func mountsUnder(dir string) ([]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			out = append(out, f[4])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(out)))
	return out, nil
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func readString(p string) string { b, _ := os.ReadFile(p); return string(b) }

func tail(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}
