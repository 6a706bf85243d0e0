package registry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// memRegistry answers registry API requests from memory: manifests by
// digest from a map, 404 for anything else. No network at all.
type memRegistry map[string][]byte

func (m memRegistry) RoundTrip(req *http.Request) (*http.Response, error) {
	resp := &http.Response{Request: req, Header: http.Header{}, StatusCode: http.StatusNotFound, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}
	body := []byte(`{"errors":[{"code":"MANIFEST_UNKNOWN","message":"not here"}]}`)
	switch {
	case req.URL.Path == "/v2/":
		resp.StatusCode, body = http.StatusOK, []byte("{}")
	case strings.Contains(req.URL.Path, "/manifests/"):
		ref := req.URL.Path[strings.LastIndex(req.URL.Path, "/")+1:]
		if b, ok := m[ref]; ok {
			resp.StatusCode, body = http.StatusOK, b
			resp.Header.Set("Content-Type", string(mediaTypeOf(b, "")))
			resp.Header.Set("Docker-Content-Digest", ref)
		}
	}
	if req.Method == http.MethodHead {
		body = nil
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	return resp, nil
}

func digestOf(b []byte) string { return fmt.Sprintf("sha256:%x", sha256.Sum256(b)) }

func fuzzManifest(config string) []byte {
	return []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` +
		config + `","size":2},"layers":[]}`)
}

// FuzzCandidates: whatever a registry serves as the image's top-level
// manifest or index (its content pinned by the digest, so the fuzzer's
// bytes are the content), Candidates never panics, never names a digest
// that does not lead to the container's config, and fails definitively
// (a deny) rather than transiently when the registry answered everything.
func FuzzCandidates(f *testing.F) {
	cfg1 := "sha256:" + strings.Repeat("c1", 32)
	cfg2 := "sha256:" + strings.Repeat("c2", 32)
	kid1, kid2 := fuzzManifest(cfg1), fuzzManifest(cfg2)
	d1, d2 := digestOf(kid1), digestOf(kid2)
	reg := memRegistry{d1: kid1, d2: kid2}
	c, err := New(Options{Transport: reg, Keychain: authn.NewMultiKeychain(), Timeout: time.Second})
	if err != nil {
		f.Fatal(err)
	}
	repo := mustRepo(f, "127.0.0.1:5000/app")

	index := func(entries ...string) []byte {
		return []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[` + strings.Join(entries, ",") + `]}`)
	}
	entry := func(d, os, arch string) string {
		return `{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + d + `","size":1,"platform":{"os":"` + os + `","architecture":"` + arch + `"}}`
	}
	f.Add(kid1, cfg1)
	f.Add(kid1, cfg2)
	f.Add(kid1, "")
	f.Add(index(entry(d1, "linux", "amd64"), entry(d2, "linux", "arm64")), cfg2)
	f.Add(index(entry(d1, "linux", "amd64")), cfg2)
	f.Add(index(entry("sha256:"+strings.Repeat("0", 64), "linux", "amd64"), entry(d2, "linux", "arm64")), cfg2)
	f.Add(index(), cfg1)
	f.Add([]byte(`{"manifests":[{"digest":"`+d2+`","mediaType":"application/vnd.oci.image.manifest.v1+json"}],"config":{"digest":"`+cfg1+`"}}`), cfg2)
	f.Add([]byte(`{"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json"}`), cfg1)
	f.Add([]byte(`not json`), cfg1)
	f.Add([]byte(`{}`), "sha256:nothex")

	f.Fuzz(func(t *testing.T, raw []byte, config string) {
		top := digestOf(raw)
		reg[top] = raw
		defer delete(reg, top)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		cands, err := c.Candidates(ctx, repo, top, config)
		if err != nil {
			if !IsDefinitive(err) {
				t.Fatalf("registry answered everything, yet a transient error: %v", err)
			}
			return
		}
		if len(cands) == 0 || len(cands) > 2 || cands[0] != top {
			t.Fatalf("candidates %v for top %s", cands, top)
		}
		if config == "" {
			if len(cands) != 1 {
				t.Fatalf("no config digest, yet candidates %v", cands)
			}
			return
		}
		if len(cands) == 1 {
			// The top is an image manifest whose config is the container's.
			got, err := configOf(raw)
			if err != nil || got != config {
				t.Fatalf("top %s accepted for config %s, its config is %q (%v)", raw, config, got, err)
			}
			return
		}
		child := cands[1]
		want := map[string]string{d1: cfg1, d2: cfg2}[child]
		if want != config {
			t.Fatalf("child %s (config %q) accepted for config %s", child, want, config)
		}
		if !bytes.Contains(raw, []byte(child)) {
			t.Fatalf("child %s is not listed in the index %s", child, raw)
		}
	})
}

// FuzzCappedBody: however a body is read, the size cap is exact: a body
// within the cap is read whole, a larger one yields at most cap bytes and
// then ErrTooLarge; a Content-Length over the cap fails at once. Once the
// body is closed, it holds nothing of the body budget.
func FuzzCappedBody(f *testing.F) {
	f.Add(uint16(10), uint16(10), []byte{1, 2, 3}, false)
	f.Add(uint16(11), uint16(10), []byte{255}, true)
	f.Add(uint16(0), uint16(0), []byte{0, 0, 1}, false)
	f.Add(uint16(4096), uint16(100), []byte{7, 0, 200}, false)
	f.Fuzz(func(t *testing.T, size, limit uint16, reads []byte, announce bool) {
		body := bytes.Repeat([]byte{'x'}, int(size))
		next := roundTripFunc(func(req *http.Request) (*http.Response, error) {
			cl := int64(-1)
			if announce {
				cl = int64(size)
			}
			return &http.Response{StatusCode: http.StatusOK, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: cl, Request: req, Header: http.Header{}}, nil
		})
		l := int64(limit)
		budget := &bodyBudget{limit: 1 << 20}
		tr := &capTransport{next: next, timeout: time.Second, caps: [...]int64{l, l, l, l}, budget: budget}
		req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1:5000/v2/app/blobs/sha256:"+strings.Repeat("0", 64), nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			if !announce || size <= limit || !errors.Is(err, ErrTooLarge) {
				t.Fatalf("RoundTrip: %v (size %d, limit %d, announced %v)", err, size, limit, announce)
			}
			return
		}
		defer func() {
			_ = resp.Body.Close()
			if n := budget.used.Load(); n != 0 {
				t.Fatalf("%d bytes of the body budget still held after Close", n)
			}
		}()
		if announce && size > limit {
			t.Fatalf("Content-Length %d over the cap %d let through", size, limit)
		}
		var got int
		buf := make([]byte, 1<<16)
		for i := 0; ; i++ {
			n := 1 + int(size)
			if len(reads) > 0 {
				n = 1 + int(reads[i%len(reads)]) // a 0-byte read returns 0, nil: not progress
			}
			n, err = resp.Body.Read(buf[:n])
			got += n
			if err != nil {
				break
			}
			if i > 1<<17 {
				t.Fatal("reads never end")
			}
		}
		switch {
		case got > int(limit):
			t.Fatalf("read %d bytes past the cap %d", got, limit)
		case size <= limit && (err != io.EOF || got != int(size)):
			t.Fatalf("body of %d within cap %d: read %d, %v", size, limit, got, err)
		case size > limit && !errors.Is(err, ErrTooLarge):
			t.Fatalf("body of %d over cap %d: read %d, %v", size, limit, got, err)
		}
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// FuzzMediaType: the media type comes from the content when it says one,
// never from the header then, and reading it never panics.
func FuzzMediaType(f *testing.F) {
	f.Add([]byte(`{"mediaType":"application/vnd.oci.image.index.v1+json"}`), "application/vnd.oci.image.manifest.v1+json")
	f.Add([]byte(`{"manifests":[]}`), "")
	f.Add([]byte(`{"config":{}}`), "")
	f.Add([]byte(`[]`), "text/html")
	f.Add([]byte(`{"mediaType":7}`), "x")
	f.Fuzz(func(t *testing.T, raw []byte, header string) {
		got := mediaTypeOf(raw, types.MediaType(header))
		var shape struct {
			MediaType *string `json:"mediaType"`
		}
		if json.NewDecoder(bytes.NewReader(raw)).Decode(&shape) == nil && shape.MediaType != nil && *shape.MediaType != "" {
			if string(got) != *shape.MediaType {
				t.Fatalf("content says %q, got %q", *shape.MediaType, got)
			}
		}
	})
}
