package notaryv1

import (
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/nri-image-verifier/nri-image-verifier/verify"
	"github.com/theupdateframework/notary/tuf/data"
)

func TestGUN(t *testing.T) {
	for in, want := range map[string]string{
		"docker.io/library/redis":       "docker.io/library/redis",
		"index.docker.io/library/redis": "docker.io/library/redis",
		"127.0.0.1:5000/team/app":       "127.0.0.1:5000/team/app",
	} {
		if got, err := gunOf(in); err != nil || got != want {
			t.Errorf("gunOf(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "Upper/Case", "a b", "reg.io/" + strings.Repeat("a", 300)} {
		if got, err := gunOf(bad); err == nil {
			t.Errorf("gunOf(%q) = %q, want an error", bad, got)
		}
	}
}

func TestParseDigest(t *testing.T) {
	good := "sha256:" + strings.Repeat("ab", 32)
	if d, err := parseDigest(good); err != nil || d.algo != "sha256" || len(d.sum) != 32 {
		t.Errorf("parseDigest(%q) = %+v, %v", good, d, err)
	}
	if _, err := parseDigest("sha512:" + strings.Repeat("0f", 64)); err != nil {
		t.Errorf("sha512: %v", err)
	}
	for _, bad := range []string{"", "sha256", "sha256:", "md5:" + strings.Repeat("a", 32), "sha256:" + strings.Repeat("AB", 32), "sha256:" + strings.Repeat("a", 63), "sha256:" + strings.Repeat("zz", 32)} {
		if _, err := parseDigest(bad); err == nil {
			t.Errorf("parseDigest(%q) succeeded", bad)
		}
	}
}

func TestRoleOf(t *testing.T) {
	sum := strings.Repeat("0a", 32)
	for in, want := range map[string]data.RoleName{
		"root": "root", "2.root": "root", "timestamp": "timestamp",
		"snapshot." + sum: "snapshot", "targets/releases." + sum: "targets/releases", "targets/a/b": "targets/a/b",
	} {
		if got := roleOf(in); got != want {
			t.Errorf("roleOf(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseChallenge(t *testing.T) {
	scheme, p := parseChallenge(`Bearer realm="https://auth.docker.io/token",service="notary.docker.io",scope="repository:docker.io/library/redis:pull"`)
	if scheme != "bearer" || p["realm"] != "https://auth.docker.io/token" || p["service"] != "notary.docker.io" || p["scope"] != "repository:docker.io/library/redis:pull" {
		t.Errorf("got %q %v", scheme, p)
	}
	scheme, p = parseChallenge(`Basic realm=notary, charset="UTF-8", x="a\"b"`)
	if scheme != "basic" || p["realm"] != "notary" || p["charset"] != "UTF-8" || p["x"] != `a"b` {
		t.Errorf("got %q %v", scheme, p)
	}
}

func FuzzParseChallenge(f *testing.F) {
	f.Add(`Bearer realm="https://a/token",service="s"`)
	f.Add(`Basic realm=x,`)
	f.Add(`Bearer realm="unterminated`)
	f.Add(`Bearer ==,,"\`)
	f.Fuzz(func(t *testing.T, h string) { parseChallenge(h) })
}

func TestRepoCachesBounded(t *testing.T) {
	c := newRepoCaches(100, 3)
	a := c.get("a")
	a.cache.Set("root", make([]byte, 60))
	b := c.get("b")
	b.cache.Set("root", make([]byte, 30))
	if c.lru.Len() != 2 || c.total != 90 {
		t.Fatalf("len %d total %d", c.lru.Len(), c.total)
	}
	// Over the byte budget: the least recently used (a) goes, not b.
	b.cache.Set("targets", make([]byte, 30))
	if _, ok := c.byGUN["a"]; ok || c.total != 60 {
		t.Errorf("after overflow: a kept=%v total %d, want a evicted, total 60", ok, c.total)
	}
	// An evicted state still in use no longer counts.
	a.cache.Set("snapshot", make([]byte, 10))
	if c.total != 60 {
		t.Errorf("evicted state counted: total %d", c.total)
	}
	// Over the repository count.
	c.get("c")
	c.get("d")
	c.get("e")
	if c.lru.Len() != 3 {
		t.Errorf("repositories kept: %d, want 3", c.lru.Len())
	}
	if _, ok := c.byGUN["b"]; ok {
		t.Error("b kept, want evicted as least recently used")
	}
	// Replacing a file charges the difference.
	e := c.get("e")
	e.cache.Set("root", make([]byte, 10))
	e.cache.Set("root", make([]byte, 4))
	if e.charged != 4 {
		t.Errorf("charged %d, want 4", e.charged)
	}
	if got, _ := e.cache.GetSized("root", 2); len(got) != 2 {
		t.Errorf("GetSized cut to %d, want 2", len(got))
	}
	if _, err := e.cache.GetSized("none", -1); err == nil {
		t.Error("GetSized of a missing file succeeded")
	}
}

func TestNewRejects(t *testing.T) {
	if _, err := New(nil, Options{}); err == nil {
		t.Error("New(nil) succeeded")
	}
	if _, err := New(&policy.Validator{Name: "n", Type: policy.TypeNotaryV1}, Options{}); err == nil {
		t.Error("New without roots succeeded")
	}
	v, _ := newValidator(t, "https://notary.io", "", key{"default", otherKey(t)})
	v.TrustRoots[0].Key = "" // built in code, not validated: no key to parse
	if _, err := New(v, Options{}); err == nil || !strings.Contains(err.Error(), "ECDSA or RSA") {
		t.Errorf("New with an unparsed key: %v", err)
	}
	v, _ = newValidator(t, "https://notary.io", "", key{"default", otherKey(t)})
	v.Cert = "not a cert"
	if _, err := New(v, Options{}); err == nil {
		t.Error("New with a bad cert succeeded")
	}
}

// A rule naming a root the validator lacks (a policy built in code) fails
// closed.
func TestUnknownRootDenied(t *testing.T) {
	v, _ := newValidator(t, "https://notary.invalid", "", key{"default", otherKey(t)})
	got := check(t, newVerifier(t, v, Options{}), verify.Subject{Repository: "reg.io/app", Digest: "sha256:" + strings.Repeat("a", 64)}, policy.With{TrustRoot: "nobody"})
	wantDenied(t, got, `trust root "nobody" is not defined`)
}

// Credentials never travel over plain HTTP to a host that is not loopback.
func TestNoSecretsInClearText(t *testing.T) {
	for raw, want := range map[string]bool{
		"https://notary.io": true, "http://127.0.0.1:4443": true, "http://localhost": true,
		"http://[::1]:80": true, "http://notary.io": false, "http://10.0.0.1": false,
	} {
		u, _ := url.Parse(raw)
		if got := safeForSecrets(u); got != want {
			t.Errorf("safeForSecrets(%s) = %v", raw, got)
		}
	}
	// A Basic challenge from a plain-HTTP non-loopback server is refused
	// before any credential is looked at.
	srv := &server{base: &url.URL{Scheme: "http", Host: "notary.io"}, keychain: staticKeychain{"u", "p"}}
	n := 0
	if _, err := srv.authorize(t.Context(), `Basic realm="x"`, "repository:x:pull", &n); err == nil || !strings.Contains(err.Error(), "plain HTTP") {
		t.Errorf("basic over http: %v", err)
	}
	// A token realm that is plain HTTP and not loopback is refused (before
	// dialling it: n counts requests).
	if _, err := srv.authorize(t.Context(), `Bearer realm="http://notary.io/token"`, "s", &n); err == nil || !strings.Contains(err.Error(), "neither https nor loopback") || n != 0 {
		t.Errorf("http realm: %v after %d requests", err, n)
	}
}

type staticKeychain struct{ user, pass string }

func (k staticKeychain) Resolve(authn.Resource) (authn.Authenticator, error) {
	return authn.FromConfig(authn.AuthConfig{Username: k.user, Password: k.pass}), nil
}
