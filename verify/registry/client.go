// Package registry is the registry client every validator shares. It wraps
// go-containerregistry's remote package with what a node gate needs: one
// HTTP transport for all requests (so connections are reused instead of
// piling up, as they do with a client per check), size caps on everything a
// registry sends, a timeout per request, digest checks on everything fetched
// by digest, and errors that tell "not there" (a definitive answer) from
// "could not ask" (a transient one).
package registry

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Defaults for Options fields left zero.
const (
	DefaultTimeout           = 10 * time.Second
	DefaultMaxManifestBytes  = 1 << 20
	DefaultMaxSignatureBytes = 256 << 10
	DefaultMaxBlobBytes      = 4 << 20
	DefaultBodyBudget        = 32 << 20
	DefaultMaxSignatures     = 32
	DefaultMaxDescriptors    = 128
	DefaultMaxIndexEntries   = 64
	userAgent                = "nri-image-verifier"
)

// Options configure a Client. The zero value is usable.
type Options struct {
	// Keychain finds credentials per registry; default authn.DefaultKeychain
	// (the docker config of the daemon's user). See DockerConfigKeychain.
	Keychain authn.Keychain
	// Timeout bounds each HTTP request, from sending it to reading the last
	// byte of its body.
	Timeout time.Duration
	// MaxManifestBytes caps image manifests and indexes.
	MaxManifestBytes int64
	// MaxSignatureBytes caps signature material: cosign's .sig, .att and
	// .sbom tag manifests, referrer lists (the referrers API and its tag
	// fallback), referrer manifests, and signature blobs (simple-signing
	// payloads, Sigstore bundles, notation envelopes). All are a few KiB
	// when honest; a small cap keeps what a hostile registry can make a
	// verification hold small.
	MaxSignatureBytes int64
	// MaxBlobBytes caps other blobs: attestation envelopes and bundles,
	// whose in-toto predicates (SBOMs, provenance) can be large.
	MaxBlobBytes int64
	// BodyBudget bounds the bytes of response bodies being read at once
	// by all requests of the Client (the daemon has one: it is the
	// node's budget). A read that would pass it fails at once with
	// ErrBodyBudget, a transient error: the verification fails closed and
	// is retried soon. It must be at least the largest size cap.
	BodyBudget int64
	// MaxSignatures caps how many signatures (legacy layers) or referrers a
	// validator examines per digest, so a registry cannot make it work
	// without end.
	MaxSignatures int
	// MaxDescriptors caps how many descriptors a signature manifest
	// (its layers) or a referrer list (its manifests) may hold: a longer
	// one is refused (ErrTooMany) before any of them is looked at, so that
	// a registry cannot make a verification walk, or fetch from, a list of
	// thousands. Honest lists hold a few: one entry per signature,
	// attestation or SBOM of one digest. Never below MaxSignatures.
	MaxDescriptors int
	// MaxIndexEntries caps how many platform manifests of an index are
	// fetched to find the one with a given config.
	MaxIndexEntries int
	// Transport replaces the HTTP transport (tests use it to count
	// requests). Default: one tuned *http.Transport per Client.
	Transport http.RoundTripper
	// Local, if set, is asked first for the manifests of the chain check
	// (Candidates): on a node, containerd's content store holds those of
	// every image it runs, so the chain from the runtime's digest to its
	// config costs no registry request. Content is used only if it hashes
	// to the digest asked for; otherwise, or on any error, the registry is
	// asked as ever.
	Local LocalContent
}

// LocalContent reads content by digest from a local store (containerd's).
type LocalContent interface {
	Content(ctx context.Context, digest string) ([]byte, error)
}

func (o Options) withDefaults() Options {
	if o.Keychain == nil {
		o.Keychain = authn.DefaultKeychain
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxManifestBytes <= 0 {
		o.MaxManifestBytes = DefaultMaxManifestBytes
	}
	if o.MaxSignatureBytes <= 0 {
		o.MaxSignatureBytes = DefaultMaxSignatureBytes
	}
	if o.MaxBlobBytes <= 0 {
		o.MaxBlobBytes = DefaultMaxBlobBytes
	}
	if o.BodyBudget <= 0 {
		o.BodyBudget = DefaultBodyBudget
	}
	if o.MaxSignatures <= 0 {
		o.MaxSignatures = DefaultMaxSignatures
	}
	if o.MaxDescriptors <= 0 {
		o.MaxDescriptors = DefaultMaxDescriptors
	}
	o.MaxDescriptors = max(o.MaxDescriptors, o.MaxSignatures)
	if o.MaxIndexEntries <= 0 {
		o.MaxIndexEntries = DefaultMaxIndexEntries
	}
	if o.Transport == nil {
		o.Transport = NewTransport()
	}
	return o
}

// Client reads from registries. It is safe for concurrent use and meant to
// live as long as the process: it keeps connections and, per repository,
// the authentication handshake (ping, token) of remote.Puller.
type Client struct {
	opts   Options
	puller *remote.Puller
	budget *bodyBudget
}

// New returns a Client.
func New(opts Options) (*Client, error) {
	opts = opts.withDefaults()
	if largest := max(opts.MaxManifestBytes, opts.MaxSignatureBytes, opts.MaxBlobBytes); opts.BodyBudget < largest {
		return nil, fmt.Errorf("registry client: body budget of %d bytes is smaller than the largest size cap (%d bytes): such a response could never be read", opts.BodyBudget, largest)
	}
	rt := &capTransport{next: opts.Transport, timeout: opts.Timeout, budget: &bodyBudget{limit: opts.BodyBudget}}
	rt.caps[classManifest] = opts.MaxManifestBytes
	rt.caps[classSignature] = opts.MaxSignatureBytes
	rt.caps[classBlob] = opts.MaxBlobBytes
	rt.caps[classOther] = max(opts.MaxManifestBytes, opts.MaxSignatureBytes, opts.MaxBlobBytes)
	p, err := remote.NewPuller(
		remote.WithTransport(rt),
		remote.WithAuthFromKeychain(opts.Keychain),
		remote.WithUserAgent(userAgent),
		// remote caps concurrent blob downloads per Puller (default 4);
		// this one Puller serves every verification on the node.
		remote.WithJobs(16),
		// One quick retry for a 5xx or a reset connection. The default
		// (1 s, then 3 s) would outlast the NRI request budget; the verdict
		// cache retries errors soon anyway.
		remote.WithRetryBackoff(remote.Backoff{Duration: 100 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 2}),
	)
	if err != nil {
		return nil, fmt.Errorf("registry client: %w", err)
	}
	return &Client{opts: opts, puller: p, budget: rt.budget}, nil
}

// BodyBytesInUse is how much of Options.BodyBudget the response bodies
// being read hold now.
func (c *Client) BodyBytesInUse() int64 { return c.budget.used.Load() }

// BodyBudgetStats is the body budget's state, for metrics.
type BodyBudgetStats struct {
	InUse, Limit int64
	// Refused counts the reads failed for want of budget.
	Refused uint64
}

// BodyBudget reports the body budget's state now.
func (c *Client) BodyBudget() BodyBudgetStats {
	return BodyBudgetStats{InUse: c.budget.used.Load(), Limit: c.budget.limit, Refused: c.budget.refused.Load()}
}

// Limits returns the options in force (with defaults filled in), so that
// validators apply the same caps.
func (c *Client) Limits() Options { return c.opts }

// NewTransport is the HTTP transport a Client uses when Options.Transport
// is nil; a caller that wraps the transport (metrics) starts from it.
// It has http.DefaultTransport's settings with more idle connections per
// host (a node talks to few registries, often), and never sends plain HTTP
// through a proxy: plain HTTP goes to loopback only (see plainHTTPAllowed),
// and a proxy would carry it, credentials and all, across the network.
func NewTransport() *http.Transport {
	var t *http.Transport
	if base, ok := http.DefaultTransport.(*http.Transport); ok {
		t = base.Clone()
	} else {
		// Someone replaced the default; build ours from scratch.
		t = &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          100,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: time.Second,
		}
	}
	t.MaxIdleConnsPerHost = 16
	t.Proxy = directPlainHTTP(t.Proxy)
	return t
}

// directPlainHTTP is proxy for HTTPS and no proxy for plain HTTP.
func directPlainHTTP(proxy func(*http.Request) (*url.URL, error)) func(*http.Request) (*url.URL, error) {
	if proxy == nil {
		return nil
	}
	return func(req *http.Request) (*url.URL, error) {
		if req.URL.Scheme == "http" {
			return nil, nil
		}
		return proxy(req)
	}
}
