// Package integration runs the real nri-image-verifier binary against the
// real runtime side of NRI (pkg/adaptation, as containerd embeds it), a real
// OCI registry on 127.0.0.1 and real cosign-format signatures made here.
package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nri-image-verifier/nri-image-verifier/internal/daemontest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/nritest"
)

const (
	pluginName = "nri-image-verifier"
	wait       = 20 * time.Second
)

func TestMain(m *testing.M) {
	code := m.Run()
	daemontest.Cleanup()
	os.Exit(code)
}

// runtime is NRI's runtime side with the default validator requiring our
// plugin, configured as the deployment configures containerd.
type runtime struct {
	*nritest.Runtime
	t *testing.T
}

func startRuntime(t *testing.T) *runtime {
	t.Helper()
	r, err := nritest.New(nritest.Options{Required: []string{pluginName}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	return &runtime{Runtime: r, t: t}
}

// waitPlugin waits until the plugin has registered and synchronised.
func (rt *runtime) waitPlugin(p *pluginProc) {
	rt.t.Helper()
	if err := rt.WaitPlugin(wait); err != nil {
		rt.t.Fatalf("%v; its log:\n%s", err, p.log())
	}
}

// create asks the runtime to create a container of image (name as
// containerd's image record has it, digest, config digest) in namespace,
// and returns the runtime's error (nil: created).
func (rt *runtime) create(namespace, name, digest, config string) (id string, err error) {
	pod, ctr := nritest.Container(namespace, nritest.Image{Name: name, Digest: digest, ConfigDigest: config})
	if digest == "" {
		// What containerd before 2.4 sends: no image, only the annotation.
		ctr.Image = nil
		ctr.Annotations = map[string]string{"io.kubernetes.cri.image-name": name}
	}
	_, err = rt.CreateContainer(context.Background(), pod, ctr)
	return ctr.Id, err
}

// pluginProc is the nri-image-verifier daemon running as a process.
type pluginProc struct {
	*daemontest.Daemon
	audit string
}

func (p *pluginProc) log() string { return p.Log() }

// startPlugin runs `nri-image-verifier run` against rt with the policy file.
func startPlugin(t *testing.T, rt *runtime, policyFile string, extra ...string) *pluginProc {
	t.Helper()
	dir := t.TempDir()
	// An empty docker config: never read the host's credentials.
	dockerConfig := filepath.Join(dir, "config.json")
	if err := os.WriteFile(dockerConfig, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &pluginProc{audit: filepath.Join(dir, "audit.jsonl")}
	args := append([]string{"run",
		"--policy", policyFile,
		"--nri-socket", rt.Socket,
		"--audit-log", p.audit,
		"--docker-config", dockerConfig,
		"--node-name", "it-node",
		// Never the system's containerd: the fallback resolver finds no
		// socket here, so an image without digest is denied.
		"--containerd-socket", filepath.Join(dir, "no-containerd.sock"),
		"--log-level", "debug",
	}, extra...)
	p.Daemon = daemontest.Run(t, daemontest.Options{Binary: daemontest.Binary(t), Args: args, Grace: wait})
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
