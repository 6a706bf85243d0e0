// Package notaryv1 answers: is this image digest a signed target of its
// repository's Notary v1 (Docker Content Trust) trust data, under the root
// keys the policy pins? It reads a repository's TUF trust data from a
// notary server with notary's own client packages, pins the root to the
// policy's root public keys (no trust on first use), lets notary check
// every signature, checksum, version and expiry, and then asks whether the
// digest the runtime uses is a target of the roles the rule names. It owns
// the notaryv1 section of the policy: Section (section.go) checks it with
// the function New builds the validator from. It must not know NRI,
// Kubernetes or the gate.
//
// The node knows the digest, not the tag (tags are never trusted here), so
// a target counts when its sha256 hash is the runtime's digest, whatever
// its name: see targets.go. Trust data is held in memory only, per
// repository and bounded; every answer of the notary server is bounded in
// size and time.
package notaryv1

import (
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/nri-image-verifier/nri-image-verifier/verify"
)

// Defaults for Options fields left zero.
const (
	DefaultTimeout          = 10 * time.Second
	DefaultMaxMetadataBytes = 4 << 20
	DefaultMaxVerifyBytes   = 16 << 20
	DefaultMaxRequests      = 64
	DefaultMaxCacheBytes    = 64 << 20
	DefaultMaxRepositories  = 1024
)

// Options tune a Verifier. The zero value is usable.
type Options struct {
	// Keychain finds the notary server's credentials by its host (a docker
	// config entry such as "notary.docker.io"); nil means anonymous.
	Keychain authn.Keychain
	// Timeout bounds each HTTP request, from sending it to the last byte.
	Timeout time.Duration
	// MaxMetadataBytes caps one metadata file (root, targets, ...).
	MaxMetadataBytes int64
	// MaxVerifyBytes and MaxRequests cap everything one verification
	// downloads, so that a server cannot keep it busy with delegations.
	MaxVerifyBytes int64
	MaxRequests    int
	// MaxCacheBytes and MaxRepositories bound the trust data kept between
	// verifications (least recently used repositories go first).
	MaxCacheBytes   int64
	MaxRepositories int
	// Now is the clock metadata expiry is checked against, in addition to
	// notary's own check against the system clock. Default time.Now.
	Now func() time.Time
	// Transport replaces the HTTP transport (tests count requests with
	// it); the validator's cert is then not applied.
	Transport http.RoundTripper
}

func (o Options) withDefaults() Options {
	if o.Keychain == nil {
		o.Keychain = authn.NewMultiKeychain() // resolves to anonymous
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxMetadataBytes <= 0 {
		o.MaxMetadataBytes = DefaultMaxMetadataBytes
	}
	if o.MaxVerifyBytes <= 0 {
		o.MaxVerifyBytes = DefaultMaxVerifyBytes
	}
	if o.MaxRequests <= 0 {
		o.MaxRequests = DefaultMaxRequests
	}
	if o.MaxCacheBytes <= 0 {
		o.MaxCacheBytes = DefaultMaxCacheBytes
	}
	if o.MaxRepositories <= 0 {
		o.MaxRepositories = DefaultMaxRepositories
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Verifier is a notaryv1 validator. It is safe for concurrent use.
type Verifier struct {
	validator *policy.Validator
	opts      Options
	srv       *server
	roots     map[string]*trustRoot
	repos     *repoCaches
}

var _ verify.Verifier = (*Verifier)(nil)

// New builds the validator: its pinned root keys, and one HTTP client for
// its notary server (with the validator's CA, if any), compiled by the
// function its Section checks them with.
func New(v *policy.Validator, opts Options) (*Verifier, error) {
	if v == nil {
		return nil, fmt.Errorf("notaryv1 validator: none given")
	}
	if len(v.TrustRoots) == 0 {
		return nil, fmt.Errorf("notaryv1 validator %q: no trust roots", v.Name)
	}
	var problems policy.Errors
	compiled := compile(&problems, "", v)
	if err := problems.Err(); err != nil {
		return nil, fmt.Errorf("notaryv1 validator %q: %w", v.Name, err)
	}
	opts = opts.withDefaults()
	roots := make(map[string]*trustRoot, len(v.TrustRoots))
	for _, tr := range v.TrustRoots {
		key := compiled.keys[tr.Name]
		switch key.(type) {
		case *ecdsa.PublicKey, *rsa.PublicKey:
		default:
			return nil, fmt.Errorf("notaryv1 validator %q: trust root %q: need an ECDSA or RSA public key, have %T", v.Name, tr.Name, key)
		}
		roots[tr.Name] = &trustRoot{name: tr.Name, key: key}
	}
	if compiled.server == nil {
		return nil, fmt.Errorf("notaryv1 validator %q: host: not a notary server URL", v.Name)
	}
	srv, err := newServer(compiled.server, v.Cert, opts)
	if err != nil {
		return nil, fmt.Errorf("notaryv1 validator %q: %w", v.Name, err)
	}
	return &Verifier{
		validator: v,
		opts:      opts,
		srv:       srv,
		roots:     roots,
		repos:     newRepoCaches(opts.MaxCacheBytes, opts.MaxRepositories),
	}, nil
}

// Verify loads and validates the trust data of s's repository and allows s
// when the roles the rule names (see chooseRoles) all list s.Digest as a
// target. Failing to reach the notary server is an error; everything the
// server answered is a verdict.
func (v *Verifier) Verify(ctx context.Context, s verify.Subject, with policy.With) (verify.Verdict, error) {
	names := with.Selected(v.validator)
	roots := make([]*trustRoot, 0, len(names))
	for _, n := range names {
		r, ok := v.roots[n]
		if !ok {
			return deny("trust root %q is not defined in notaryv1 validator %q", n, v.validator.Name), nil
		}
		roots = append(roots, r)
	}
	if len(roots) == 0 {
		// Fail closed: pinning nothing must not mean trusting anything.
		return deny("no trust root selected in notaryv1 validator %q", v.validator.Name), nil
	}
	gun, err := gunOf(s.Repository)
	if err != nil {
		return deny("repository %q is not valid: %v", s.Repository, err), nil
	}
	want, err := parseDigest(s.Digest)
	if err != nil {
		return deny("image digest %q is not valid: %v", s.Digest, err), nil
	}

	l, err := v.load(ctx, gun, roots)
	if err != nil {
		return v.failure(gun, l, err)
	}
	if reason := checkRootKeys(l.repo.Root, gun, roots); reason != "" {
		return deny("%s", reason), nil
	}
	now := v.opts.Now()
	if reason := checkExpiry(l.repo, gun, now); reason != "" {
		return deny("%s", reason), nil
	}
	roles, reason := chooseRoles(l, gun, with.Delegations, now)
	if reason != "" {
		return deny("%s", reason), nil
	}
	return findDigest(l.repo, gun, roles, want, names), nil
}

func deny(format string, args ...any) verify.Verdict {
	return verify.Verdict{Reason: fmt.Sprintf(format, args...)}
}

// gunOf returns the notary GUN of a repository: its fully qualified name,
// "docker.io/<repo>" for Docker Hub (the GUN docker itself signs under).
func gunOf(repo string) (string, error) {
	if rest, ok := strings.CutPrefix(repo, name.DefaultRegistry+"/"); ok {
		repo = "docker.io/" + rest
	}
	if _, err := name.NewRepository(repo, name.StrictValidation); err != nil {
		return "", err
	}
	if len(repo) > 255 {
		return "", fmt.Errorf("longer than 255 characters")
	}
	return repo, nil
}

// digest is the runtime's digest, split for comparison with TUF hashes.
type digest struct {
	algo string // "sha256" or "sha512", a TUF hash name
	sum  []byte
	str  string // as given
}

func parseDigest(d string) (digest, error) {
	algo, hexSum, ok := strings.Cut(d, ":")
	want := map[string]int{"sha256": 32, "sha512": 64}[algo]
	if !ok || want == 0 {
		return digest{}, fmt.Errorf("want sha256:<hex> or sha512:<hex>")
	}
	sum, err := hex.DecodeString(hexSum)
	if err != nil || len(sum) != want || strings.ToLower(hexSum) != hexSum {
		return digest{}, fmt.Errorf("want %d lower-case hex digits after %q", 2*want, algo+":")
	}
	return digest{algo: algo, sum: sum, str: d}, nil
}
