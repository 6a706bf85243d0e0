package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/nri-image-verifier/nri-image-verifier/gate"
	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/nri-image-verifier/nri-image-verifier/verify"
	"github.com/nri-image-verifier/nri-image-verifier/verify/registry"
	"github.com/nri-image-verifier/nri-image-verifier/verify/validators"
)

// A signed image of one of the kinds the report measures.
type image struct {
	kind   string // "legacy", "bundle", "index", "unsigned"
	repo   string // host/path
	digest string // what the runtime sends as Image.Digest
	config string // what the runtime sends as Image.ConfigDigest
	child  string // index: this platform's manifest
	signed bool
}

func (i image) name() string { return i.repo + ":v1" }
func (i image) ref() string  { return i.repo + "@" + i.digest }

// cosignFormat is how cosign's library is asked to verify the image.
func (i image) cosignFormat() string {
	if i.kind == "bundle" {
		return "bundle"
	}
	return "legacy"
}

// kinds are the cold-verification cases: cosign v2's .sig tag, cosign v3's
// bundle referrer, and a two-platform index signed (.sig) on the index.
var kinds = []string{"legacy", "bundle", "index"}

// pushSigned pushes one image of kind to host/path and signs it with s.
func pushSigned(t testing.TB, host, path, kind string, s *imagetest.Signer) image {
	t.Helper()
	repo := host + "/" + path
	img := image{kind: kind, repo: repo, signed: kind != "unsigned"}
	switch kind {
	case "index":
		idx := imagetest.PushIndex(t, repo+":v1")
		img.digest, img.config, img.child = idx.Digest, idx.Platforms[0].ConfigDigest, idx.Platforms[0].Digest // linux/amd64
	default:
		m := imagetest.PushImageConfig(t, repo+":v1")
		img.digest, img.config = m.Digest, m.ConfigDigest
	}
	switch kind {
	case "legacy", "index":
		imagetest.SignLegacy(t, repo, img.digest, s, imagetest.SignOptions{})
	case "bundle":
		imagetest.SignBundle(t, repo, img.digest, s, imagetest.SignOptions{})
	}
	return img
}

// policySource is a policy requiring host's images to be signed with s's
// key, as the daemon reads it.
func policySource(host string, s *imagetest.Signer) string {
	key := "      " + strings.ReplaceAll(strings.TrimSpace(s.PublicKeyPEM()), "\n", "\n      ")
	return fmt.Sprintf("validators:\n- name: default\n  type: cosign\n  trustRoots:\n  - name: default\n    key: |\n%s\npolicy:\n- pattern: %q\n",
		key, host+"/*")
}

func policyFor(t testing.TB, host string, s *imagetest.Signer) *policy.Policy {
	t.Helper()
	pol, err := policy.Parse([]byte(policySource(host, s)))
	if err != nil {
		t.Fatalf("policy: %v", err)
	}
	return pol
}

func writePolicyFile(t testing.TB, dir, host string, s *imagetest.Signer) string {
	t.Helper()
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, []byte(policySource(host, s)), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// newRegistryClient is the daemon's registry client with tr (an
// instrumented transport) under it. An empty keychain: never the host's
// credentials.
func newRegistryClient(t testing.TB, tr *tracer) *registry.Client {
	t.Helper()
	c, err := registry.New(registry.Options{Transport: tr, Keychain: emptyKeychain{}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// newGate is the daemon's gate (validators.Builder, one registry client)
// with a counter of verifications.
func newGate(t testing.TB, pol *policy.Policy, reg *registry.Client, cache *verify.Cache, counter *countingVerifications) *gate.Gate {
	t.Helper()
	build := validators.Builder(reg)
	g, err := gate.New(pol, func(v *policy.Validator) (verify.Verifier, error) {
		inner, err := build(v)
		if err != nil || counter == nil {
			return inner, err
		}
		return verify.VerifierFunc(func(ctx context.Context, s verify.Subject, w policy.With) (verify.Verdict, error) {
			counter.add(s.Digest)
			return inner.Verify(ctx, s, w)
		}), nil
	}, cache)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// emptyKeychain: anonymous everywhere, never the host's credentials.
type emptyKeychain struct{}

func (emptyKeychain) Resolve(authn.Resource) (authn.Authenticator, error) {
	return authn.Anonymous, nil
}

// countingVerifications counts the validator runs per digest.
type countingVerifications struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *countingVerifications) add(digest string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[digest]++
}

func (c *countingVerifications) total() (runs, digests int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.n {
		runs += n
	}
	return runs, len(c.n)
}
