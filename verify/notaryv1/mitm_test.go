package notaryv1

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
)

type nodeKeychain struct{}

func (nodeKeychain) Resolve(authn.Resource) (authn.Authenticator, error) {
	return authn.FromConfig(authn.AuthConfig{Username: "node", Password: "secret"}), nil
}

// mitm is a man in the middle on a plain-HTTP link to the notary server,
// in process (nothing is dialled): it answers with a Bearer challenge whose
// realm is a token service of his own, and records what the node sends.
type mitm struct {
	mu   sync.Mutex
	sent []*http.Request
}

func (m *mitm) RoundTrip(req *http.Request) (*http.Response, error) {
	m.mu.Lock()
	m.sent = append(m.sent, req.Clone(context.Background()))
	m.mu.Unlock()
	h, status, body := http.Header{}, http.StatusOK, `{"token":"T"}`
	if req.URL.Host == "notary.corp.example" && !strings.HasPrefix(req.Header.Get("Authorization"), "Bearer ") {
		status, body = http.StatusUnauthorized, ""
		h.Set("WWW-Authenticate", `Bearer realm="https://attacker.example/token",service="notary"`)
	}
	return &http.Response{StatusCode: status, Header: h, Body: io.NopCloser(strings.NewReader(body)), Request: req}, nil
}

// Over plain HTTP the challenge may be forged, so the token service it
// names is asked without the node's credentials (the Basic branch already
// refuses to send them there).
func TestPlainHTTPChallengeGetsNoCredentials(t *testing.T) {
	m := &mitm{}
	base, _ := url.Parse("http://notary.corp.example")
	s, err := newServer(base, "", Options{Transport: m, Keychain: nodeKeychain{}, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse("http://notary.corp.example/v2/corp.example/app/_trust/tuf/root.json")
	n := 0
	_, _ = s.get(context.Background(), u, "corp.example/app", 1<<20, &n)
	asked := false
	for _, r := range m.sent {
		if r.URL.Host == "attacker.example" {
			asked = true
			if a := r.Header.Get("Authorization"); a != "" {
				t.Fatalf("the node sent %q to the token service a plain-HTTP challenge named", a)
			}
		}
	}
	if !asked {
		t.Fatalf("the token service was never asked (requests: %d); the test does not reach the case", len(m.sent))
	}
}
