// Command cosignpeer is the peer the benchmark report (../) compares
// nri-image-verifier's cold verification with: cosign's own library, the way
// a Go admission controller calls it (Connaisseur calls
// pkg/cosign.VerifyImageSignatures), with a public key, no transparency log
// and no SCT, so that nothing but the image's registry is dialled.
//
// It lives in a module of its own so that cosign and its dependencies stay
// out of the main go.mod. The benchmark starts it once and sends it one JSON
// request per line on stdin; it answers each with one JSON line on stdout:
//
//	{"ref":"127.0.0.1:5000/app@sha256:...","format":"legacy"|"bundle"}
//	{"ok":true,"ns":1234567,"requests":4,"depth":3}
//
// ns is the wall time of the one library call, measured here so that the
// pipe is not counted. requests counts the HTTP requests the call made
// (an instrumented transport under go-containerregistry, as the benchmark
// does for nri-image-verifier), depth the longest chain of requests that
// had to wait for one another, counting a new connection as one more.
//
// All calls share one HTTP transport (keep-alive connections are reused,
// the most favourable setting for cosign); -fresh-transport gives every call
// its own, as a client built per check (Connaisseur's) does.
package main

import (
	"bufio"
	"context"
	"crypto"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/cosign/v3/pkg/cosign"
	ociremote "github.com/sigstore/cosign/v3/pkg/oci/remote"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
)

type request struct {
	Ref    string `json:"ref"`
	Format string `json:"format"`
}

type response struct {
	OK       bool   `json:"ok"`
	Err      string `json:"err,omitempty"`
	NS       int64  `json:"ns"`
	Requests int    `json:"requests"`
	Depth    int    `json:"depth"`
}

func main() {
	keyPath := flag.String("key", "", "PEM public key file")
	fresh := flag.Bool("fresh-transport", false, "a new HTTP transport per call (Connaisseur-style client per check)")
	flag.Parse()
	pem, err := os.ReadFile(*keyPath)
	if err != nil {
		fatal(err)
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(pem)
	if err != nil {
		fatal(err)
	}
	// cosign's CLI loads a key this way (SHA-256 for every key type).
	verifier, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		fatal(err)
	}
	shared := newTransport()

	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var req request
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			fatal(err)
		}
		base := shared
		if *fresh {
			base = newTransport()
		}
		tr := &tracer{next: base}
		resp := verify(req, verifier, tr)
		resp.Requests, resp.Depth = tr.summary()
		if *fresh {
			base.CloseIdleConnections()
		}
		if err := out.Encode(resp); err != nil {
			fatal(err)
		}
	}
}

func verify(req request, verifier signature.Verifier, tr http.RoundTripper) response {
	ref, err := name.ParseReference(req.Ref)
	if err != nil {
		return response{Err: err.Error()}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	co := &cosign.CheckOpts{
		RegistryClientOpts: []ociremote.Option{ociremote.WithRemoteOptions(
			remote.WithTransport(tr), remote.WithContext(ctx))},
		SigVerifier: verifier,
		IgnoreTlog:  true,
		IgnoreSCT:   true,
	}
	start := time.Now()
	switch req.Format {
	case "legacy":
		// What Connaisseur and `cosign verify --key` (v2 format) do.
		co.ClaimVerifier = cosign.SimpleClaimVerifier
		_, _, err = cosign.VerifyImageSignatures(ctx, ref, co)
	case "bundle":
		// What `cosign verify --key --new-bundle-format` (cosign v3's
		// default format) does once it knows the image has bundles.
		co.NewBundleFormat = true
		co.ClaimVerifier = cosign.IntotoSubjectClaimVerifier
		_, _, err = cosign.VerifyImageAttestations(ctx, ref, co)
	default:
		err = fmt.Errorf("unknown format %q", req.Format)
	}
	ns := time.Since(start).Nanoseconds()
	if err != nil {
		return response{NS: ns, Err: err.Error()}
	}
	return response{OK: true, NS: ns}
}

func newTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 16
	return t
}

// tracer counts requests and records when each was sent and answered, and
// whether it needed a new connection.
type tracer struct {
	next  http.RoundTripper
	mu    sync.Mutex
	spans []span
}

type span struct {
	start, end time.Time
}

func (t *tracer) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.next.RoundTrip(req)
	t.mu.Lock()
	t.spans = append(t.spans, span{start: start, end: time.Now()})
	t.mu.Unlock()
	return resp, err
}

// summary returns the number of requests and the longest chain of them
// in which each started after the previous one ended.
func (t *tracer) summary() (int, int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := append([]span(nil), t.spans...)
	sort.Slice(s, func(i, j int) bool { return s[i].start.Before(s[j].start) })
	depth := make([]int, len(s))
	best := 0
	for i := range s {
		depth[i] = 1
		for j := 0; j < i; j++ {
			if !s[j].end.After(s[i].start) && depth[j]+1 > depth[i] {
				depth[i] = depth[j] + 1
			}
		}
		best = max(best, depth[i])
	}
	return len(s), best
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "cosignpeer:", err)
	os.Exit(1)
}
