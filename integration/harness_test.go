// Package integration runs the real nri-image-verifier binary against the
// real runtime side of NRI (pkg/adaptation, as containerd embeds it), a real
// OCI registry on 127.0.0.1 and real cosign-format signatures made here.
package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/adaptation"
	"github.com/containerd/nri/pkg/api"
	validator "github.com/containerd/nri/plugins/default-validator/builtin"
)

const (
	pluginName = "nri-image-verifier"
	wait       = 20 * time.Second
)

// binary is the nri-image-verifier built once for the package.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "nri-image-verifier-it-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "nri-image-verifier")
	build := exec.Command("go", "build", "-tags", "nri_no_wasm", "-o", binary, "../cmd/nri-image-verifier")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building nri-image-verifier:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// runtime is NRI's runtime side with the default validator requiring our
// plugin, configured as the deployment configures containerd.
type runtime struct {
	t      *testing.T
	socket string
	r      *adaptation.Adaptation
	syncs  atomic.Int32
	synced chan struct{}
}

func startRuntime(t *testing.T) *runtime {
	t.Helper()
	// Unix socket paths are limited to 108 bytes; t.TempDir can be longer.
	dir, err := os.MkdirTemp("", "nri-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	rt := &runtime{t: t, socket: filepath.Join(dir, "nri.sock"), synced: make(chan struct{}, 16)}
	r, err := adaptation.New("integration-runtime", "v0.0.1", rt.sync, rt.update,
		adaptation.WithSocketPath(rt.socket),
		adaptation.WithPluginPath(filepath.Join(dir, "plugins")),
		adaptation.WithPluginConfigPath(filepath.Join(dir, "conf.d")),
		adaptation.WithDefaultValidator(&validator.DefaultValidatorConfig{
			Enable:          true,
			RequiredPlugins: []string{pluginName},
		}),
	)
	if err != nil {
		t.Fatalf("adaptation.New: %v", err)
	}
	if err := r.Start(); err != nil {
		t.Fatalf("adaptation.Start: %v", err)
	}
	rt.r = r
	t.Cleanup(r.Stop)
	return rt
}

func (rt *runtime) sync(ctx context.Context, cb adaptation.SyncCB) error {
	_, err := cb(ctx, nil, nil)
	// The first sync is Start's own, before any plugin connected.
	if rt.syncs.Add(1) > 1 && err == nil {
		select {
		case rt.synced <- struct{}{}:
		default:
		}
	}
	return err
}

func (rt *runtime) update(context.Context, []*api.ContainerUpdate) ([]*api.ContainerUpdate, error) {
	return nil, nil
}

// waitPlugin waits until the plugin has registered and synchronised.
func (rt *runtime) waitPlugin(p *pluginProc) {
	rt.t.Helper()
	select {
	case <-rt.synced:
	case <-time.After(wait):
		rt.t.Fatalf("plugin did not register with the runtime; its log:\n%s", p.log())
	}
	rt.r.BlockPluginSync().Unblock()
}

var ctrSeq atomic.Int64

// create asks the runtime to create a container of image (name as
// containerd's image record has it, digest, config digest) in namespace,
// and returns the runtime's error (nil: created).
func (rt *runtime) create(namespace, name, digest, config string) (id string, err error) {
	n := ctrSeq.Add(1)
	id = fmt.Sprintf("ctr-%d", n)
	pod := &api.PodSandbox{Id: fmt.Sprintf("pod-%d", n), Name: fmt.Sprintf("pod-%d", n),
		Namespace: namespace, Uid: fmt.Sprintf("uid-%d", n)}
	ctr := &api.Container{Id: id, PodSandboxId: pod.Id, Name: "app",
		Image: &api.Image{Name: name, Digest: digest, ConfigDigest: config}}
	if digest == "" {
		// What containerd before 2.4 sends: no image, only the annotation.
		ctr.Image = nil
		ctr.Annotations = map[string]string{"io.kubernetes.cri.image-name": name}
	}
	b := rt.r.BlockPluginSync()
	defer b.Unblock()
	_, err = rt.r.CreateContainer(context.Background(), &api.CreateContainerRequest{Pod: pod, Container: ctr})
	return id, err
}

// pluginProc is the nri-image-verifier daemon running as a process.
type pluginProc struct {
	cmd   *exec.Cmd
	audit string
	mu    sync.Mutex
	buf   bytes.Buffer
	done  chan struct{}
}

func (p *pluginProc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.buf.Write(b)
}

func (p *pluginProc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.buf.String()
}

// startPlugin runs `nri-image-verifier run` against rt with the policy file.
func startPlugin(t *testing.T, rt *runtime, policyFile string, extra ...string) *pluginProc {
	t.Helper()
	dir := t.TempDir()
	// An empty docker config: never read the host's credentials.
	dockerConfig := filepath.Join(dir, "config.json")
	if err := os.WriteFile(dockerConfig, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &pluginProc{audit: filepath.Join(dir, "audit.jsonl"), done: make(chan struct{})}
	args := append([]string{"run",
		"--policy", policyFile,
		"--nri-socket", rt.socket,
		"--audit-log", p.audit,
		"--docker-config", dockerConfig,
		"--node-name", "it-node",
		// Never the system's containerd: the fallback resolver finds no
		// socket here, so an image without digest is denied.
		"--containerd-socket", filepath.Join(dir, "no-containerd.sock"),
		"--log-level", "debug",
	}, extra...)
	p.cmd = exec.Command(binary, args...)
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start plugin: %v", err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.done:
		case <-time.After(wait):
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("plugin log:\n%s", p.log())
		}
	})
	rt.waitPlugin(p)
	return p
}

// auditLine returns the audit line for container id, waiting briefly for it.
func (p *pluginProc) auditLine(t *testing.T, id string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		var found map[string]any
		n := 0
		f, err := os.Open(p.audit)
		if err == nil {
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				var m map[string]any
				if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
					t.Fatalf("audit line is not JSON: %v: %s", err, sc.Text())
				}
				if m["container"] == "app" && m["pod"] == strings.Replace(id, "ctr-", "pod-", 1) {
					found = m
					n++
				}
			}
			f.Close()
		}
		if n > 1 {
			t.Fatalf("container %s has %d audit lines, want 1", id, n)
		}
		if found != nil {
			return found
		}
		if time.Now().After(deadline) {
			t.Fatalf("no audit line for container %s", id)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// writePolicy replaces path atomically, as a ConfigMap update does.
func writePolicy(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
