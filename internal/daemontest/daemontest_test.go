package daemontest

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestBuildOnce: concurrent callers share one build.
func TestBuildOnce(t *testing.T) {
	var wg sync.WaitGroup
	paths := make([]string, 4)
	errs := make([]error, 4)
	for i := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			paths[i], errs[i] = Build(DaemonPkg, Plain)
		}()
	}
	wg.Wait()
	for i := range paths {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if paths[i] != paths[0] {
			t.Fatalf("two builds: %s and %s", paths[0], paths[i])
		}
	}
	fi, err := os.Stat(paths[0])
	if err != nil || fi.Mode()&0o111 == 0 {
		t.Fatalf("no executable at %s: %v", paths[0], err)
	}
	if !strings.HasPrefix(filepath.Base(filepath.Dir(filepath.Dir(paths[0]))), dirPrefix) {
		t.Errorf("built outside a %s folder: %s", dirPrefix, paths[0])
	}
}

// TestDaemon starts the daemon with no NRI runtime to talk to: it serves
// its health endpoints meanwhile, says where, and stops on SIGTERM.
func TestDaemon(t *testing.T) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(pol, []byte("validators:\n- name: default\n  type: static\n  approve: false\npolicy:\n- pattern: \"*\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := Run(t, Options{Args: []string{"run", "--policy", pol,
		"--nri-socket", filepath.Join(dir, "none.sock"), "--containerd-socket", "", "--events=false",
		"--audit-log", filepath.Join(dir, "audit.jsonl"), "--http-addr", "127.0.0.1:0"},
		Unset: []string{"KUBERNETES_SERVICE_"}})
	if code, body := d.Get(t, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d %s", code, body)
	}
	if code, _ := d.Get(t, "/readyz"); code == http.StatusOK {
		t.Error("/readyz is OK without an NRI runtime")
	}
	if d.Exited() {
		t.Fatalf("exited: %s", d.Log())
	}
	start := time.Now()
	d.Stop()
	if !d.Exited() || time.Since(start) >= DefaultGrace {
		t.Errorf("not stopped by SIGTERM (%v); log:\n%s", time.Since(start), d.Log())
	}
	if st := d.ProcessState(); st == nil || !st.Success() {
		t.Errorf("exit: %v; log:\n%s", st, d.Tail(10))
	}
	d.Stop() // again: a no-op
}

func TestMain(m *testing.M) {
	code := m.Run()
	Cleanup()
	os.Exit(code)
}
