package cosign

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/nri-image-verifier/nri-image-verifier/verify"
	"github.com/nri-image-verifier/nri-image-verifier/verify/registry"
)

// hostileTransport serves the fuzzer's bytes as the signature manifest
// (the .sig tag) and the referrers list of one digest, and passes every
// other request to the real registry on loopback: signature payloads,
// bundles and referrer manifests that genuinely exist there.
type hostileTransport struct {
	next          http.RoundTripper
	sigPath       string
	referrersPath string
	sig, refs     []byte
}

func (h *hostileTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	var mt string
	switch req.URL.Path {
	case h.sigPath:
		body, mt = h.sig, "application/vnd.oci.image.manifest.v1+json"
	case h.referrersPath:
		body, mt = h.refs, "application/vnd.oci.image.index.v1+json"
	default:
		return h.next.RoundTrip(req)
	}
	if req.Method == http.MethodHead {
		body = nil
	}
	return &http.Response{StatusCode: http.StatusOK, Request: req, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": {mt}}, ContentLength: int64(len(body)), Body: io.NopCloser(bytes.NewReader(body))}, nil
}

// FuzzHostileSignatures: a registry controls the signature manifest and
// the referrers list of an image alice never signed. It has genuine
// material to work with: alice's signatures (both formats) of another
// image, and mallory's signatures of this one. Whatever it serves, the
// verifier never allows the image for alice's key.
func FuzzHostileSignatures(f *testing.F) {
	host := imagetest.StartRegistry(f)
	repo := host + "/app"
	alice := imagetest.NewSigner(f, imagetest.ECDSAP256)
	mallory := imagetest.NewSigner(f, imagetest.ECDSAP256)
	target := imagetest.PushImageConfig(f, repo+":target")
	other := imagetest.PushImageConfig(f, repo+":other")
	for _, fm := range formats {
		fm.sign(f, repo, other.Digest, alice, imagetest.SignOptions{})
		fm.sign(f, repo, target.Digest, mallory, imagetest.SignOptions{})
	}
	r, err := name.NewRepository(repo)
	if err != nil {
		f.Fatal(err)
	}
	sigOf := func(digest string) []byte {
		d, err := remote.Get(imagetest.SigTag(r, digest))
		if err != nil {
			f.Fatal(err)
		}
		return d.Manifest
	}
	refsOf := func(digest string) []byte {
		resp, err := http.Get("http://" + host + "/v2/app/referrers/" + digest)
		if err != nil {
			f.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	aliceSig, mallorySig := sigOf(other.Digest), sigOf(target.Digest)
	aliceRefs, malloryRefs := refsOf(other.Digest), refsOf(target.Digest)
	f.Add(aliceSig, aliceRefs)
	f.Add(mallorySig, malloryRefs)
	f.Add(mallorySig, aliceRefs)
	f.Add(bytes.Replace(aliceSig, []byte(`"layers":[`), []byte(`"layers":[`+layerOf(mallorySig)+`,`), 1), malloryRefs)
	f.Add([]byte(`{}`), []byte(`{"manifests":[]}`))
	f.Add([]byte(`{"layers":[{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","digest":"sha256:`+strings.Repeat("0", 64)+`"}]}`), []byte(`[]`))

	tr := &hostileTransport{
		next:          http.DefaultTransport,
		sigPath:       "/v2/app/manifests/" + strings.Replace(target.Digest, ":", "-", 1) + ".sig",
		referrersPath: "/v2/app/referrers/" + target.Digest,
	}
	reg, err := registry.New(registry.Options{Transport: tr, Timeout: 5 * time.Second})
	if err != nil {
		f.Fatal(err)
	}
	v, err := New(newValidator(f, root{"alice", alice}), reg)
	if err != nil {
		f.Fatal(err)
	}
	subject := verify.Subject{Repository: repo, Digest: target.Digest, ConfigDigest: target.ConfigDigest}

	f.Fuzz(func(t *testing.T, sig, refs []byte) {
		tr.sig, tr.refs = sig, refs
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		got, err := v.Verify(ctx, subject, policy.With{TrustRoot: "alice"})
		if err == nil && got.Allowed {
			t.Fatalf("allowed an image alice never signed: %+v\nsignature manifest: %s\nreferrers: %s", got, sig, refs)
		}
	})
}

// layerOf returns the first layer descriptor of a manifest, as JSON.
func layerOf(manifest []byte) string {
	i := bytes.Index(manifest, []byte(`"layers":[`))
	if i < 0 {
		return "{}"
	}
	rest := manifest[i+len(`"layers":[`):]
	depth := 0
	for j, c := range rest {
		switch c {
		case '{':
			depth++
		case '}':
			depth--
			if depth == 0 {
				return string(rest[:j+1])
			}
		}
	}
	return "{}"
}
