package containerdtest

// The pieces of a containerd world that the e2e suite
// (integration/containerd), the single-node cluster (integration/cluster)
// and the benchmarks share: the cached containerd build, its config
// rendered from the demo's template, and containerd started on it. The
// demo's files are found from the repository root, wherever go test runs.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nri-image-verifier/nri-image-verifier/internal/daemontest"
)

// Install runs hack/install-containerd.sh, the demo's installer: it builds
// containerd version and the runc shim into a cache outside the clone
// (minutes, once per version) and installs runc from apt if missing. It
// returns the folder holding containerd and its shim.
func Install(t testing.TB, version string) string {
	t.Helper()
	start := time.Now()
	script, err := hackFile("install-containerd.sh")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(script, version)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("hack/install-containerd.sh: %v\n%s", err, stderr.String())
	}
	t.Logf("containerd %s and runc ready in %v%s", version, time.Since(start).Round(time.Millisecond),
		strings.TrimRight("\n"+stderr.String(), "\n"))
	return strings.TrimSpace(string(out))
}

// hackFile is the path of the demo's file name under hack/.
func hackFile(name string) (string, error) {
	root, err := daemontest.RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "hack", name), nil
}

// WriteConfig renders hack/containerd-config.toml, the demo's config, for
// a run in dir, with the sandbox image pause and the plain-HTTP loopback
// registry (host:port, given a hosts.toml under dir/certs.d), and writes
// it to dir/containerd.toml, whose path it returns. edit, if not nil,
// changes the rendered text first (the cluster adds keys).
func WriteConfig(dir, pause, registry string, requestTimeout time.Duration, edit func(string) string) (string, error) {
	tmplPath, err := hackFile("containerd-config.toml")
	if err != nil {
		return "", err
	}
	tmpl, err := os.ReadFile(tmplPath)
	if err != nil {
		return "", fmt.Errorf("containerd config template: %w", err)
	}
	cfg := strings.NewReplacer(
		"@DIR@", dir,
		"@PAUSE_IMAGE@", pause,
		"@NRI_REQUEST_TIMEOUT@", requestTimeout.String(),
	).Replace(string(tmpl))
	if edit != nil {
		cfg = edit(cfg)
	}
	hosts := filepath.Join(dir, "certs.d", registry, "hosts.toml")
	if err := os.MkdirAll(filepath.Dir(hosts), 0o755); err != nil {
		return "", fmt.Errorf("registry hosts.toml: %w", err)
	}
	if err := os.WriteFile(hosts, []byte(fmt.Sprintf("server = %q\n\n[host.%[1]q]\n  capabilities = [\"pull\", \"resolve\"]\n",
		"http://"+registry)), 0o644); err != nil {
		return "", fmt.Errorf("registry hosts.toml: %w", err)
	}
	path := filepath.Join(dir, "containerd.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return "", fmt.Errorf("containerd config: %w", err)
	}
	return path, nil
}

// StartContainerd starts the containerd in ctrdDir (Install's folder) on
// config, logging to logPath, and waits up to timeout for its socket and
// its CRI services (through cri, which reconnects across restarts).
func StartContainerd(ctrdDir, config, socket, logPath string, cri *CRI, timeout time.Duration) (*Proc, error) {
	// containerd finds the shim on PATH.
	p, err := StartProc("containerd", logPath, []string{"PATH=" + ctrdDir + ":" + os.Getenv("PATH")},
		filepath.Join(ctrdDir, "containerd"), "--config", config)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(socket); err == nil {
			break
		}
		if p.Exited() || time.Now().After(deadline) {
			p.Stop(time.Second)
			return nil, fmt.Errorf("containerd did not start; its log:\n%s", p.Tail(40))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := cri.WaitReady(context.Background(), timeout); err != nil {
		p.Stop(5 * time.Second)
		return nil, fmt.Errorf("%v; containerd's log:\n%s", err, p.Tail(40))
	}
	return p, nil
}
