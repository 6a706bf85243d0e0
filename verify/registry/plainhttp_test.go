package registry

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

// lan is an in-process stand-in for every registry on the network: it
// answers plain-HTTP requests as a registry asking for basic auth would,
// and fails every HTTPS request as a host without TLS would. Nothing is
// dialled; it records what the client would have sent.
type lan struct {
	mu   sync.Mutex
	sent []*http.Request
}

func (l *lan) RoundTrip(req *http.Request) (*http.Response, error) {
	l.mu.Lock()
	l.sent = append(l.sent, req.Clone(context.Background()))
	l.mu.Unlock()
	if req.URL.Scheme == "https" {
		return nil, errors.New("tls: first record does not look like a TLS handshake")
	}
	h := http.Header{}
	status := http.StatusOK
	if req.Header.Get("Authorization") == "" {
		status = http.StatusUnauthorized
		h.Set("WWW-Authenticate", `Basic realm="registry"`)
	}
	return &http.Response{StatusCode: status, Header: h, Body: io.NopCloser(strings.NewReader("{}")), Request: req}, nil
}

type staticKeychain struct{}

func (staticKeychain) Resolve(authn.Resource) (authn.Authenticator, error) {
	return authn.FromConfig(authn.AuthConfig{Username: "node", Password: "secret"}), nil
}

// A registry at a private address gets neither a plain-HTTP request nor,
// above all, the node's credentials in clear; go-containerregistry alone
// sends both (it picks HTTP for RFC 1918 names). Loopback keeps plain HTTP.
func TestNoPlainHTTPOffNode(t *testing.T) {
	const digest = "sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, host := range []string{"10.1.2.3:5000", "192.168.7.7", "172.16.0.9:443", "reg.localhost:5000", "LOCALHOST:5000", "127.0.0.1:5000", "localhost:5000", "[::1]:5000"} {
		t.Run(host, func(t *testing.T) {
			l := &lan{}
			c, err := New(Options{Transport: l, Keychain: staticKeychain{}})
			if err != nil {
				t.Fatal(err)
			}
			ref, err := name.NewDigest(host + "/app@" + digest)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Manifest(context.Background(), ref)
			local := isLoopback(host)
			var plain, clearCreds int
			for _, r := range l.sent {
				if r.URL.Scheme == "http" {
					plain++
					if r.Header.Get("Authorization") != "" {
						clearCreds++
					}
				}
			}
			if !local {
				if plain != 0 || clearCreds != 0 {
					t.Fatalf("%d plain-HTTP requests, %d with credentials, to %s", plain, clearCreds, host)
				}
				if err == nil {
					t.Fatal("fetched a manifest though HTTPS failed")
				}
				if strings.EqualFold(host, "LOCALHOST:5000") {
					return // go-containerregistry itself only tries HTTPS for it
				}
				if !errors.Is(err, ErrPlainHTTP) && !strings.Contains(err.Error(), "plain HTTP refused") {
					t.Fatalf("error %v does not say plain HTTP was refused", err)
				}
				return
			}
			if plain == 0 {
				t.Fatalf("no plain-HTTP request to loopback %s (err %v)", host, err)
			}
		})
	}
}

// Plain HTTP never goes through a proxy (it would cross the network in
// clear); HTTPS keeps the proxy the environment names.
func TestNoProxyForPlainHTTP(t *testing.T) {
	proxyURL, _ := url.Parse("http://proxy.corp.example:3128")
	proxy := directPlainHTTP(func(*http.Request) (*url.URL, error) { return proxyURL, nil })
	for scheme, want := range map[string]*url.URL{"http": nil, "https": proxyURL} {
		req, _ := http.NewRequest(http.MethodGet, scheme+"://127.0.0.1:5000/v2/", nil)
		if got, err := proxy(req); err != nil || got != want {
			t.Errorf("%s: proxy %v, %v; want %v", scheme, got, err, want)
		}
	}
	if directPlainHTTP(nil) != nil {
		t.Error("no proxy became a proxy")
	}
}
