package notaryv1

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
)

// server is one notary server: its URL and the HTTP client every
// verification shares, so that connections are reused.
type server struct {
	base     *url.URL
	client   *http.Client
	timeout  time.Duration
	keychain authn.Keychain
	tokens   tokenCache
}

func newServer(base *url.URL, caPEM string, opts Options) (*server, error) {
	rt := opts.Transport
	if rt == nil {
		t, err := newTransport(caPEM)
		if err != nil {
			return nil, err
		}
		rt = t
	}
	return &server{
		base: base,
		client: &http.Client{
			Transport: rt,
			// A notary server has no reason to redirect; following one
			// would dial wherever it points.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		timeout:  opts.Timeout,
		keychain: opts.Keychain,
	}, nil
}

// newTransport is http.DefaultTransport's settings, trusting caPEM instead
// of the system roots when it is set (a notary server with its own CA).
func newTransport(caPEM string) (*http.Transport, error) {
	var t *http.Transport
	if base, ok := http.DefaultTransport.(*http.Transport); ok {
		t = base.Clone()
	} else {
		t = &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        100,
			IdleConnTimeout:     90 * time.Second,
			TLSHandshakeTimeout: 10 * time.Second,
		}
	}
	t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if caPEM != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(caPEM)) {
			return nil, errors.New("cert: no PEM certificate")
		}
		t.TLSClientConfig.RootCAs = pool
	}
	return t, nil
}

// reply is a fully read HTTP response.
type reply struct {
	status int
	text   string // "404 Not Found"
	body   []byte
}

var (
	// errTooLarge reports a body over the cap; the caller says which file.
	errTooLarge = errors.New("larger than the cap")
	// errAuth marks a failed answer to the server's auth challenge.
	errAuth = errors.New("authentication failed")
)

// get fetches u (a URL on the notary server) for the repository gun,
// answering an auth challenge once, and reads at most limit bytes of body.
// n counts the requests made (the caller enforces its budget).
func (s *server) get(ctx context.Context, u *url.URL, gun string, limit int64, n *int) (reply, error) {
	scope := "repository:" + gun + ":pull"
	authz, _ := s.tokens.get(scope)
	r, challenge, err := s.once(ctx, u, authz, limit, n)
	if err != nil || r.status != http.StatusUnauthorized || challenge == "" {
		return r, err
	}
	authz, err = s.authorize(ctx, challenge, scope, n)
	if err != nil {
		return reply{}, fmt.Errorf("%w: %w", errAuth, err)
	}
	r, _, err = s.once(ctx, u, authz, limit, n)
	return r, err
}

// once makes one GET request within the per-request timeout.
func (s *server) once(parent context.Context, u *url.URL, authz string, limit int64, n *int) (reply, string, error) {
	*n++
	ctx, cancel := context.WithTimeout(parent, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return reply{}, "", err
	}
	req.Header.Set("User-Agent", "nri-image-verifier")
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return reply{}, "", s.timedOut(parent, ctx, err)
	}
	defer resp.Body.Close()
	r := reply{status: resp.StatusCode, text: resp.Status}
	if resp.StatusCode != http.StatusOK {
		// Error bodies are not read: notary's error details are not used.
		return r, resp.Header.Get("WWW-Authenticate"), nil
	}
	if resp.ContentLength > limit {
		return r, "", errTooLarge
	}
	r.body, err = io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return reply{}, "", fmt.Errorf("reading %s: %w", u.Redacted(), s.timedOut(parent, ctx, err))
	}
	if int64(len(r.body)) > limit {
		return r, "", errTooLarge
	}
	return r, "", nil
}

// timedOut says so when err comes from the per-request timeout (ctx)
// rather than from the caller's deadline (parent).
func (s *server) timedOut(parent, ctx context.Context, err error) error {
	if ctx.Err() != nil && parent.Err() == nil {
		return fmt.Errorf("no answer within the %s request timeout: %w", s.timeout, err)
	}
	return err
}
