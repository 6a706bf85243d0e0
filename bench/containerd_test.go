package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nri-image-verifier/nri-image-verifier/internal/containerdtest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/daemontest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
)

// realWorld is a real containerd (v2.4, hack/install-containerd.sh, the
// demo's config) with the nri-image-verifier binary as its NRI validator,
// in a directory of its own, on a loopback registry.
type realWorld struct {
	dir        string
	registry   string
	signer     *imagetest.Signer
	program    []byte
	containerd *containerdtest.Proc
	daemon     *daemontest.Daemon
	audit      string
	cri        *containerdtest.CRI
	pod        containerdtest.Pod
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
			img, err := containerdtest.PushRunnable(ref, w.program, fmt.Sprint("app ", i))
			if err != nil {
				t.Fatal(err)
			}
			if signed {
				if i%3 == 2 {
					imagetest.SignBundle(t, img.Repo(), img.Digest, w.signer, imagetest.SignOptions{})
				} else {
					imagetest.SignLegacy(t, img.Repo(), img.Digest, w.signer, imagetest.SignOptions{})
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
	if err := containerdtest.BecomeSubreaper(); err != nil {
		t.Fatal(err)
	}
	ctrdDir := containerdtest.Install(t, "v2.4.2")
	dir, err := os.MkdirTemp("/tmp", "niv-bench-ctrd-")
	if err != nil {
		t.Fatal(err)
	}
	w := &realWorld{dir: dir, audit: filepath.Join(dir, "audit.jsonl")}
	t.Cleanup(func() { w.teardown(t) })

	daemontest.Binary(t)
	if w.program, err = containerdtest.Program(); err != nil {
		t.Fatal(err)
	}
	w.registry = imagetest.StartRegistry(t)
	w.signer = imagetest.NewSigner(t, imagetest.ECDSAP256)
	pause, err := containerdtest.PushRunnable(w.registry+"/bench/pause:v1", w.program)
	if err != nil {
		t.Fatal(err)
	}

	cfg, err := containerdtest.WriteConfig(dir, pause.Ref, w.registry, 2*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	must(t, os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(policySource(w.registry, w.signer)), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "docker-config.json"), []byte("{}"), 0o644))

	socket := filepath.Join(dir, "containerd.sock")
	if w.cri, err = containerdtest.DialCRI(socket); err != nil {
		t.Fatal(err)
	}
	if w.containerd, err = containerdtest.StartContainerd(ctrdDir, cfg, socket, filepath.Join(dir, "containerd.log"), w.cri, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The pod: its sandbox is created without the plugin's say, but a
	// required plugin must be connected for containers, so the daemon
	// starts first.
	w.startDaemon(t, false)
	if w.pod, err = w.cri.RunHostPod(ctx, containerdtest.PodSpec{Namespace: "bench", Name: "prewarm", LogDir: filepath.Join(dir, "logs"),
		CgroupParent: "/" + filepath.Base(dir)}); err != nil {
		t.Fatal(err)
	}
	w.stopDaemon(t)
	return w
}

func (w *realWorld) startDaemon(t *testing.T, prewarm bool) {
	t.Helper()
	args := []string{"run", "--policy", filepath.Join(w.dir, "policy.yaml"),
		"--nri-socket", filepath.Join(w.dir, "nri.sock"), "--audit-log", w.audit,
		"--docker-config", filepath.Join(w.dir, "docker-config.json"), "--node-name", "bench",
		"--containerd-socket", filepath.Join(w.dir, "containerd.sock"), "--events=false", "--log-level", "debug"}
	if prewarm {
		args = append(args, "--prewarm")
	}
	d, err := daemontest.Start(daemontest.Options{Binary: daemontest.Binary(t), Args: args})
	if err != nil {
		t.Fatal(err)
	}
	w.daemon = d
	if err := d.WaitLog(daemontest.ConnectedLine, 0, 30*time.Second); err != nil {
		t.Fatalf("the daemon did not connect to containerd: %v", err)
	}
}

func (w *realWorld) stopDaemon(t *testing.T) {
	if w.daemon == nil {
		return
	}
	if t.Failed() {
		t.Logf("daemon log:\n%s", w.daemon.Tail(30))
	}
	w.daemon.Stop()
	w.daemon = nil
}

// teardown removes the pod through the CRI, stops the daemon and
// containerd (by PID), then removes what is left of this run (processes
// naming its directory: shims; mounts, cgroups, the directory).
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
	if t.Failed() && w.containerd != nil {
		t.Logf("containerd log:\n%s", w.containerd.Tail(30))
	}
	w.containerd.Stop(15 * time.Second)
	if err := containerdtest.CleanDir(w.dir); err != nil {
		t.Error(err)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
