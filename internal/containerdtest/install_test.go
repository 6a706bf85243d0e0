package containerdtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestInstallConcurrently runs hack/install-containerd.sh three times at
// once on an empty cache and a PATH without runc, as go test does when
// integration/containerd and integration/cluster start together on a
// fresh machine. go and apt-get are stand-ins: go install takes a while
// and writes the two binaries; apt-get fails, as dpkg's lock makes the
// real one fail, when another apt-get runs, and "installs" runc. Every run
// must succeed and print the same folder, with one build and one install.
func TestInstallConcurrently(t *testing.T) {
	script, err := hackFile("install-containerd.sh")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	stubs := filepath.Join(dir, "bin")
	state := filepath.Join(dir, "state")
	cache := filepath.Join(dir, "cache")
	for _, d := range []string{stubs, state} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeStub := func(name, body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(stubs, name), []byte("#!/bin/bash\nset -e\nstate="+state+"\n"+body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeStub("go", `echo "$$ $*" >> "$state/go-calls"
sleep 1
for b in containerd containerd-shim-runc-v2; do printf '#!/bin/sh\n' > "$GOBIN/$b"; chmod +x "$GOBIN/$b"; done
`)
	writeStub("apt-get", `echo "$PPID $*" >> "$state/apt-calls"
if ! mkdir "$state/dpkg-lock" 2>/dev/null; then
	echo "E: Could not get lock $state/dpkg-lock" >&2
	exit 100
fi
sleep 0.5
case " $* " in *" install "*) printf '#!/bin/sh\n' > "$(dirname "$0")/runc"; chmod +x "$(dirname "$0")/runc" ;; esac
rmdir "$state/dpkg-lock"
`)
	// PATH is the stubs and links to the tools the script uses: no runc,
	// wherever this machine has one.
	for _, tool := range []string{"bash", "flock", "mktemp", "mkdir", "rm", "rmdir", "mv", "sleep", "chmod", "dirname"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(p, filepath.Join(stubs, tool)); err != nil {
			t.Fatal(err)
		}
	}
	env := append(os.Environ(), "PATH="+stubs, "NIV_CACHE="+cache, "NIV_LOCK_WAIT=60")

	const runs = 3
	outs := make([]string, runs)
	errs := make([]error, runs)
	var wg sync.WaitGroup
	for i := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(script, "v9.9.9")
			cmd.Env = env
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			outs[i] = strings.TrimSpace(string(out))
			if err != nil {
				errs[i] = fmt.Errorf("run %d: %v\n%s", i, err, stderr.String())
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	want := filepath.Join(cache, "containerd-v9.9.9")
	for i, out := range outs {
		if out != want {
			t.Errorf("run %d printed %q, want %q", i, out, want)
		}
	}
	lines := func(name string) []string {
		b, _ := os.ReadFile(filepath.Join(state, name))
		return strings.Split(strings.TrimSpace(string(b)), "\n")
	}
	if calls := lines("go-calls"); len(calls) != 1 {
		t.Errorf("go install ran %d times, want once: %q", len(calls), calls)
	}
	// One update and one install, by one run.
	if calls := lines("apt-calls"); len(calls) != 2 || !strings.Contains(calls[0], " update") || !strings.Contains(calls[1], " install") ||
		strings.Fields(calls[0])[0] != strings.Fields(calls[1])[0] {
		t.Errorf("apt-get calls %q, want one update and one install by one run", calls)
	}
	for _, c := range lines("apt-calls") {
		if !strings.Contains(c, "DPkg::Lock::Timeout=") {
			t.Errorf("apt-get without DPkg::Lock::Timeout: %q", c)
		}
	}
	for _, b := range []string{"containerd", "containerd-shim-runc-v2"} {
		if fi, err := os.Stat(filepath.Join(want, b)); err != nil || fi.Mode()&0o111 == 0 {
			t.Errorf("%s not installed: %v", b, err)
		}
	}
	if left, _ := filepath.Glob(want + ".partial.*"); len(left) > 0 {
		t.Errorf("partial builds left: %q", left)
	}

	// Warm: nothing is built or installed again.
	cmd := exec.Command(script, "v9.9.9")
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != want {
		t.Errorf("warm run: %v: %s", err, out)
	}
	if len(lines("go-calls")) != 1 || len(lines("apt-calls")) != 2 {
		t.Error("the warm run built or installed again")
	}
}
