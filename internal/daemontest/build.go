// Package daemontest runs the nri-image-verifier daemon as a process for
// tests: the binary built once per test process, started with the test's
// arguments, its output captured (a locked buffer, with waits for a line),
// its metrics and health address read from its log, and stopped cleanly.
// It knows nothing of NRI, containerd or Kubernetes: what the daemon is
// pointed at is the caller's business, given as arguments.
//
// Builds go to a folder of this process's own under the system temp
// folder (go build's cache makes a rebuild a link, seconds); folders
// left by test processes that are gone are removed by the next build.
package daemontest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// Module is the module path of the repository the binaries are built from.
const Module = "github.com/nri-image-verifier/nri-image-verifier"

// DaemonPkg is the daemon's main package, relative to the repository root.
const DaemonPkg = "./cmd/nri-image-verifier"

// Flavour is how a binary is built. Every flavour builds with
// -tags nri_no_wasm and -trimpath, as `make build` does.
type Flavour int

const (
	// Plain is the binary as `make build` makes it.
	Plain Flavour = iota
	// Stripped is Plain linked with -ldflags=-s -w.
	Stripped
	// Static is Stripped with CGO_ENABLED=0: what a container image
	// without libc needs (the plugin's image, the test images' program).
	Static
)

func (f Flavour) String() string {
	switch f {
	case Plain:
		return "plain"
	case Stripped:
		return "stripped"
	case Static:
		return "static"
	}
	return "flavour" + strconv.Itoa(int(f))
}

// args and env of go build for the flavour.
func (f Flavour) goBuild() (args, env []string) {
	args = []string{"build", "-tags", "nri_no_wasm", "-trimpath"}
	if f == Stripped || f == Static {
		args = append(args, "-ldflags=-s -w")
	}
	if f == Static {
		env = []string{"CGO_ENABLED=0"}
	}
	return args, env
}

// Binary returns the daemon (Plain), built on the first call in this test
// process; it fails t if the build fails.
func Binary(t testing.TB) string {
	t.Helper()
	bin, err := Build(DaemonPkg, Plain)
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

type buildKey struct {
	pkg string
	f   Flavour
}

type built struct {
	once sync.Once
	path string
	err  error
}

var (
	buildsMu sync.Mutex
	builds   = map[buildKey]*built{}
	dirOnce  sync.Once
	dir      string
	dirErr   error
)

// Build builds the main package pkg of the repository ("./cmd/..."
// relative to its root) as flavour f, once per test process: later and
// concurrent calls with the same arguments wait for that build and get its
// result. It returns the binary's path.
func Build(pkg string, f Flavour) (string, error) {
	buildsMu.Lock()
	b := builds[buildKey{pkg, f}]
	if b == nil {
		b = &built{}
		builds[buildKey{pkg, f}] = b
	}
	buildsMu.Unlock()
	b.once.Do(func() { b.path, b.err = build(pkg, f) })
	return b.path, b.err
}

func build(pkg string, f Flavour) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	dirOnce.Do(func() { dir, dirErr = processDir() })
	if dirErr != nil {
		return "", dirErr
	}
	out := filepath.Join(dir, f.String(), filepath.Base(pkg))
	args, env := f.goBuild()
	cmd := exec.Command("go", append(args, "-o", out, pkg)...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("daemontest: go %s (in %s): %v\n%s", strings.Join(cmd.Args[1:], " "), root, err, b)
	}
	return out, nil
}

// dirPrefix names the build folders: dirPrefix<pid>-<random>.
const dirPrefix = "niv-daemontest-"

// processDir makes this process's build folder, first removing those of
// test processes that have exited.
func processDir() (string, error) {
	old, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, d := range old {
		pidStr, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(d), dirPrefix), "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = os.RemoveAll(d)
		}
	}
	d, err := os.MkdirTemp("", dirPrefix+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return "", fmt.Errorf("daemontest: %w", err)
	}
	return d, nil
}

// Cleanup removes this process's builds; a TestMain may call it after
// m.Run, when no test builds any more. Without it, the next test process
// to build removes them.
func Cleanup() {
	buildsMu.Lock()
	defer buildsMu.Unlock()
	if dir != "" {
		_ = os.RemoveAll(dir)
	}
}

// RepoRoot is the repository's root: the first folder at or above the
// working directory (tests run in their package's folder) whose go.mod
// declares Module.
func RepoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && modulePath(b) == Module {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("daemontest: no go.mod of %s at or above %s", Module, wd)
		}
	}
}

func modulePath(gomod []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(gomod))
	for sc.Scan() {
		if m, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module "); ok {
			return strings.Trim(strings.TrimSpace(m), `"`)
		}
	}
	return ""
}
