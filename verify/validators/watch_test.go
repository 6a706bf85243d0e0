package validators

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nri-image-verifier/nri-image-verifier/internal/policytest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/sigstoretest"
	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/nri-image-verifier/nri-image-verifier/verify/registry"
)

// The daemon's reload path is policy.Watch with Check; these helpers are
// policy's own watch test helpers, for that path.

const waitFor = 10 * time.Second

func version(content string) string {
	sum := sha256.Sum256([]byte(content))
	return hex.EncodeToString(sum[:])
}

// startWatch runs policy.Watch with Check, as the daemon does, until the
// test ends and returns its callbacks' channels.
func startWatch(t *testing.T, path string) (loads chan *policy.Policy, errs chan error) {
	loads, errs = make(chan *policy.Policy, 16), make(chan error, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- policy.Watch(ctx, path, Check, func(p *policy.Policy) { loads <- p }, func(err error) { errs <- err })
	}()
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

// withSigstore replaces TRUSTED_ROOT in a YAML text with the quoted path of
// a fresh local Sigstore's trusted_root.json.
func withSigstore(t testing.TB, yaml string) string {
	t.Helper()
	ss := sigstoretest.New(t)
	return strings.ReplaceAll(yaml, "TRUSTED_ROOT", strconv.Quote(ss.WriteTrustedRoot(t)))
}

const keylessRootYAML = `{name: ci, keyless: {issuer: "https://token.actions.githubusercontent.com", subjectRegex: "https://github\\.com/org/.*"}}`

// A reload whose trusted root is unreadable is a policy error: the watcher
// reports it and the last good policy (and its material) stays in force.
func TestKeylessReloadKeepsLastGood(t *testing.T) {
	good := withSigstore(t, "validators: [{name: default, type: cosign, trustedRoot: TRUSTED_ROOT, trustRoots: ["+keylessRootYAML+"]}]\npolicy: [{pattern: '*', with: {trustRoot: ci}}]")
	c := policytest.NewConfigMapDir(t, good)
	loads, errs := startWatch(t, c.Path())
	select {
	case p := <-loads:
		// The material is the cosign verifier's: it builds only with it.
		reg, err := registry.New(registry.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Builder(reg)(&p.Validators[0]); p.Version != version(good) || err != nil {
			t.Fatalf("first load: version %s, material: %v", p.Version, err)
		}
	case err := <-errs:
		t.Fatalf("good policy refused: %v", err)
	case <-time.After(waitFor):
		t.Fatal("no load")
	}
	missing := filepath.Join(t.TempDir(), "gone.json")
	c.Swap("validators: [{name: default, type: cosign, trustedRoot: " + strconv.Quote(missing) + ", trustRoots: [" + keylessRootYAML + "]}]\npolicy: [{pattern: '*', with: {trustRoot: ci}}]")
	deadline := time.After(waitFor)
	for {
		select {
		case p := <-loads:
			t.Fatalf("a policy with a missing trusted root was loaded: %s", p.Version)
		case err := <-errs:
			if strings.Contains(err.Error(), "validators[0].trustedRoot: open "+missing) {
				return
			}
		case <-deadline:
			t.Fatal("no error for the missing trusted root")
		}
	}
}
