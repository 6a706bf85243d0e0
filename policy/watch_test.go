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

	"github.com/nri-image-verifier/nri-image-verifier/internal/policytest"
)

// waitFor is generous: events normally arrive in milliseconds, and the
// poll fallback (pollInterval) bounds a missed one.
const waitFor = 10 * time.Second

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
	cm := policytest.NewConfigMapDir(t, v1)
	loads, errs := startWatch(t, cm.Path())

	expectLoad(t, loads, errs, v1) // read at start

	cm.Swap(v2)
	expectLoad(t, loads, errs, v2)

	// The same content again is no new version; then an invalid file is
	// reported, and nothing is loaded in between.
	cm.Swap(v2)
	cm.Swap("validators: []\npolicy: []\n")
	expectError(t, loads, errs, "at least one validator")
	if len(loads) != 0 {
		t.Fatalf("onLoad called for unchanged or invalid content")
	}

	cm.Swap(v3)
	expectLoad(t, loads, errs, v3)
	if len(errs) != 0 {
		t.Fatalf("unexpected onError: %v", <-errs)
	}

	// Back to a bad file and then to the content already in use: one error,
	// and no reload of the same version.
	cm.Swap("nope: 1\n")
	expectError(t, loads, errs, `unknown field "nope"`)
	cm.Swap(v3)
	cm.Swap(v1)
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
