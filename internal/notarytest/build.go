// Package notarytest runs the real notary-server (v0.7.0) on 127.0.0.1 for
// tests, and publishes trust data to it with notary's own client, as
// `docker trust` / DOCKER_CONTENT_TRUST=1 would: root, targets, snapshot
// (server-managed), timestamp (server-managed), delegation roles, tags.
//
// notary-server does not build as a library with current dependencies, so
// it runs as a process: built once from its module source (patched, see
// patch.go) into a cache outside the repository and started per test with
// memory storage and the local trust service. Every helper takes a
// testing.TB and fails it on error.
package notarytest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Version is the notary-server version built and run.
const Version = "v0.7.0"

const (
	module       = "github.com/theupdateframework/notary"
	buildTimeout = 10 * time.Minute
)

// CacheDir is where built tools are kept between runs:
// $NIV_CACHE, else $XDG_CACHE_HOME/nri-image-verifier, else
// $HOME/.cache/nri-image-verifier (as for containerd in the other tests).
func CacheDir() string {
	if d := os.Getenv("NIV_CACHE"); d != "" {
		return d
	}
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			home = os.TempDir()
		}
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "nri-image-verifier")
}

var (
	buildMu  sync.Mutex
	buildBin string
)

// Binary returns the path of the notary-server binary, building it first
// if the cache does not have it (see build). Test processes building at
// the same time (go test runs packages in parallel) take turns on a lock
// file.
func Binary(t testing.TB) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if buildBin != "" {
		return buildBin
	}
	dir := filepath.Join(CacheDir(), "notary-server-"+Version)
	bin := filepath.Join(dir, "notary-server")
	stamp := filepath.Join(dir, "notary-server.stamp")
	if fresh(bin, stamp) {
		buildBin = bin
		return bin
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("notary-server cache: %v", err)
	}
	unlock, err := lockFile(filepath.Join(dir, ".lock"), buildTimeout)
	if err != nil {
		t.Fatalf("notary-server cache: %v", err)
	}
	defer unlock()
	if !fresh(bin, stamp) { // another process may have built it meanwhile
		build(t, dir, bin)
		if err := os.WriteFile(stamp, []byte(buildStamp+"\n"), 0o644); err != nil {
			t.Fatalf("notary-server cache: %v", err)
		}
	}
	buildBin = bin
	return bin
}

// fresh reports whether bin exists and was built the way build builds it
// now (an unpatched binary from an earlier helper is rebuilt).
func fresh(bin, stamp string) bool {
	b, err := os.ReadFile(stamp)
	return err == nil && strings.TrimSpace(string(b)) == buildStamp && isExecutable(bin)
}

// build builds notary-server from its v0.7.0 module source, patched (see
// patch.go): the release as `go install ...@v0.7.0` builds it rejects
// every delegation upload when built with Go >= 1.17. About 20 s with
// Go's module and build caches warm.
func build(t testing.TB, dir, bin string) {
	t.Helper()
	tmp, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		t.Fatalf("notary-server build: %v", err)
	}
	defer os.RemoveAll(tmp)
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	start := time.Now()
	// Outside any module, with none of the caller's flags or workspace.
	// CGO is off: the memory backend needs no sqlite, and the build is
	// three times faster.
	env := append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off", "GO111MODULE=on", "CGO_ENABLED=0")
	modDir := goOut(ctx, t, tmp, env, "go", "mod", "download", "-json", module+"@"+Version)
	src := filepath.Join(tmp, "src")
	if err := copyTree(modDir, src); err != nil {
		t.Fatalf("notary-server build: copying the module source: %v", err)
	}
	if err := patch(src); err != nil {
		t.Fatalf("notary-server build: %v", err)
	}
	out := filepath.Join(tmp, "notary-server")
	goOut(ctx, t, src, env, "go", "build", "-trimpath", "-o", out, "./cmd/notary-server")
	if err := os.Rename(out, bin); err != nil {
		t.Fatalf("notary-server build: %v", err)
	}
	t.Logf("built notary-server %s (patched) into %s in %s", Version, bin, time.Since(start).Round(time.Second))
}

// goOut runs a go command in dir and returns what it prints; for `go mod
// download -json` that is the module's directory.
func goOut(ctx context.Context, t testing.TB, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir, cmd.Env = dir, env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("building notary-server: %q failed (%v):\n%s%s", cmd.String(), err, out, stderr.String())
	}
	if len(args) > 0 && args[0] == "mod" {
		var m struct{ Dir, Error string }
		if err := json.Unmarshal(out, &m); err != nil || m.Dir == "" {
			t.Fatalf("building notary-server: %q: no module directory (%v %s):\n%s", cmd.String(), err, m.Error, out)
		}
		return m.Dir
	}
	return string(out)
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// lockFile takes an exclusive flock on path, waiting at most wait.
func lockFile(path string, wait time.Duration) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(wait)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			return nil, err
		}
		time.Sleep(200 * time.Millisecond)
	}
}
