package policy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// waitFor is generous: events normally arrive in milliseconds, and the
// poll fallback (pollInterval) bounds a missed one.
const waitFor = 10 * time.Second

// configMapDir lays out a directory the way kubelet mounts a ConfigMap:
// policy.yaml -> ..data/policy.yaml, ..data -> ..<timestamp>/.
type configMapDir struct {
	t   *testing.T
	dir string
	n   int
	old string
}

func newConfigMapDir(t *testing.T, content string) *configMapDir {
	c := &configMapDir{t: t, dir: t.TempDir()}
	c.swap(content)
	if err := os.Symlink(filepath.Join("..data", "policy.yaml"), c.path()); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *configMapDir) path() string { return filepath.Join(c.dir, "policy.yaml") }

// swap publishes new content as kubelet does: a new timestamped directory,
// an atomic rename of a fresh "..data" symlink over the old one, then the
// old directory removed.
func (c *configMapDir) swap(content string) {
	c.t.Helper()
	c.n++
	ts := fmt.Sprintf("..2026_01_01_00_00_%02d.%09d", c.n, c.n)
	if err := os.Mkdir(filepath.Join(c.dir, ts), 0o755); err != nil {
		c.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.dir, ts, "policy.yaml"), []byte(content), 0o644); err != nil {
		c.t.Fatal(err)
	}
	tmp := filepath.Join(c.dir, "..data_tmp")
	if err := os.Symlink(ts, tmp); err != nil {
		c.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(c.dir, "..data")); err != nil {
		c.t.Fatal(err)
	}
	if c.old != "" {
		if err := os.RemoveAll(filepath.Join(c.dir, c.old)); err != nil {
			c.t.Fatal(err)
		}
	}
	c.old = ts
}

func version(content string) string {
	sum := sha256.Sum256([]byte(content))
	return hex.EncodeToString(sum[:])
}

// startWatch runs Watch until the test ends and returns its callbacks'
// channels.
func startWatch(t *testing.T, path string) (loads chan *Policy, errs chan error) {
	loads, errs = make(chan *Policy, 16), make(chan error, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Watch(ctx, path, nil, func(p *Policy) { loads <- p }, func(err error) { errs <- err }) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Watch returned %v after cancel, want nil", err)
			}
		case <-time.After(waitFor):
			t.Error("Watch did not return after cancel")
		}
	})
	return loads, errs
}

func expectLoad(t *testing.T, loads <-chan *Policy, errs <-chan error, content string) {
	t.Helper()
	select {
	case p := <-loads:
		if p.Version != version(content) {
			t.Fatalf("onLoad with Version %s, want %s", p.Version, version(content))
		}
	case err := <-errs:
		t.Fatalf("onError(%v), want onLoad", err)
	case <-time.After(waitFor):
		t.Fatal("no onLoad")
	}
}

func expectError(t *testing.T, loads <-chan *Policy, errs <-chan error, want string) {
	t.Helper()
	select {
	case err := <-errs:
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("onError(%v), want one containing %q", err, want)
		}
	case p := <-loads:
		t.Fatalf("onLoad(%s), want onError", p.Version)
	case <-time.After(waitFor):
		t.Fatal("no onError")
	}
}

func staticYAML(pattern string) string {
	return fmt.Sprintf("validators: [{name: default, type: static, approve: true}]\npolicy: [{pattern: %q}]\n", pattern)
}

func TestWatchConfigMap(t *testing.T) {
	v1, v2, v3 := staticYAML("*"), staticYAML("reg.io/*"), staticYAML("ghcr.io/*")
	cm := newConfigMapDir(t, v1)
	loads, errs := startWatch(t, cm.path())

	expectLoad(t, loads, errs, v1) // read at start

	cm.swap(v2)
	expectLoad(t, loads, errs, v2)

	// The same content again is no new version; then an invalid file is
	// reported, and nothing is loaded in between.
	cm.swap(v2)
	cm.swap("validators: []\npolicy: []\n")
	expectError(t, loads, errs, "at least one validator")
	if len(loads) != 0 {
		t.Fatalf("onLoad called for unchanged or invalid content")
	}

	cm.swap(v3)
	expectLoad(t, loads, errs, v3)
	if len(errs) != 0 {
		t.Fatalf("unexpected onError: %v", <-errs)
	}

	// Back to a bad file and then to the content already in use: one error,
	// and no reload of the same version.
	cm.swap("nope: 1\n")
	expectError(t, loads, errs, `unknown field "nope"`)
	cm.swap(v3)
	cm.swap(v1)
	expectLoad(t, loads, errs, v1)
}

func TestWatchPlainFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	loads, errs := startWatch(t, path)
	expectError(t, loads, errs, "no such file")

	// Written in place, and replaced by rename as editors do.
	v1, v2 := staticYAML("*"), staticYAML("reg.io/*")
	if err := os.WriteFile(path, []byte(v1), 0o644); err != nil {
		t.Fatal(err)
	}
	expectLoad(t, loads, errs, v1)
	tmp := filepath.Join(dir, ".policy.yaml.tmp")
	if err := os.WriteFile(tmp, []byte(v2), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	expectLoad(t, loads, errs, v2)
}

func TestWatchArguments(t *testing.T) {
	if err := Watch(context.Background(), "", nil, func(*Policy) {}, func(error) {}); err == nil {
		t.Error("Watch with no path returned nil")
	}
	if err := Watch(context.Background(), "x", nil, nil, func(error) {}); err == nil {
		t.Error("Watch with no onLoad returned nil")
	}
}
