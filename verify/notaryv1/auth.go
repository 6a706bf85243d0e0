package notaryv1

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
)

// Notary servers use the registry's auth scheme: a 401 with a Bearer
// challenge names a token service that hands out a token for
// "repository:<gun>:pull" (anonymously for public trust data, as on Docker
// Hub), or a Basic challenge. Credentials come from the keychain entry of
// the notary server's host.

const maxTokenBytes = 64 << 10

// authorize answers challenge and returns the Authorization header value.
func (s *server) authorize(ctx context.Context, challenge, scope string, n *int) (string, error) {
	scheme, params := parseChallenge(challenge)
	switch scheme {
	case "basic":
		if !safeForSecrets(s.base) {
			return "", fmt.Errorf("refusing to send credentials over plain HTTP to %s", s.base.Host)
		}
		user, pass, err := s.credentials(ctx)
		if err != nil {
			return "", err
		}
		if user == "" {
			return "", errors.New("the server asks for a password and the docker config has none for it")
		}
		authz := "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
		// Re-read from the keychain now and then: credentials rotate.
		s.tokens.put(scope, authz, 5*time.Minute)
		return authz, nil
	case "bearer":
		tok, ttl, err := s.token(ctx, params, scope, n)
		if err != nil {
			return "", err
		}
		s.tokens.put(scope, "Bearer "+tok, ttl)
		return "Bearer " + tok, nil
	}
	return "", fmt.Errorf("unsupported auth challenge %q", scheme)
}

// token asks the token service named by a Bearer challenge.
func (s *server) token(ctx context.Context, params map[string]string, scope string, n *int) (string, time.Duration, error) {
	realm, err := url.Parse(params["realm"])
	if err != nil || realm.Host == "" {
		return "", 0, fmt.Errorf("bad token realm %q", params["realm"])
	}
	if realm.Scheme != "https" && !(realm.Scheme == "http" && isLoopback(realm)) {
		// The token answers for the trust data's availability only (the
		// data is signed), but credentials must not travel in clear text.
		return "", 0, fmt.Errorf("token realm %s is neither https nor loopback", realm.Redacted())
	}
	// Over plain HTTP the challenge itself may be a man in the middle's,
	// naming a token service of his choosing: ask it without credentials,
	// as the Basic branch refuses to send them.
	var user, pass string
	if safeForSecrets(s.base) {
		if user, pass, err = s.credentials(ctx); err != nil {
			return "", 0, err
		}
	}
	q := realm.Query()
	if svc := params["service"]; svc != "" {
		q.Set("service", svc)
	}
	q.Set("scope", scope)
	realm.RawQuery = q.Encode()

	*n++
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, realm.String(), nil)
	if err != nil {
		return "", 0, err
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return "", 0, fmt.Errorf("token service: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", 0, fmt.Errorf("token service %s answered %s", realm.Host, resp.Status)
	}
	var body struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if err := json.NewDecoder(&limitedReader{r: resp.Body, n: maxTokenBytes}).Decode(&body); err != nil {
		return "", 0, fmt.Errorf("token service %s: %w", realm.Host, err)
	}
	tok := body.Token
	if tok == "" {
		tok = body.AccessToken
	}
	if tok == "" {
		return "", 0, fmt.Errorf("token service %s sent no token", realm.Host)
	}
	// Docker's token spec: 60 s when unset; keep a margin before expiry.
	ttl := 60 * time.Second
	if body.ExpiresIn > 0 {
		ttl = time.Duration(body.ExpiresIn) * time.Second
	}
	return tok, max(ttl-10*time.Second, 0), nil
}

// credentials returns the keychain's username and password for the notary
// server's host, or none.
func (s *server) credentials(ctx context.Context) (string, string, error) {
	a, err := authn.Resolve(ctx, s.keychain, hostResource(s.base.Host))
	if err != nil {
		return "", "", fmt.Errorf("credentials for %s: %w", s.base.Host, err)
	}
	cfg, err := authn.Authorization(ctx, a)
	if err != nil {
		return "", "", fmt.Errorf("credentials for %s: %w", s.base.Host, err)
	}
	if cfg.Username == "" && cfg.Auth != "" {
		// A docker config "auth" field: base64 of "user:password".
		if raw, err := base64.StdEncoding.DecodeString(cfg.Auth); err == nil {
			cfg.Username, cfg.Password, _ = strings.Cut(string(raw), ":")
		}
	}
	return cfg.Username, cfg.Password, nil
}

// hostResource names the notary server to a keychain.
type hostResource string

func (h hostResource) String() string      { return string(h) }
func (h hostResource) RegistryStr() string { return string(h) }

func safeForSecrets(u *url.URL) bool { return u.Scheme == "https" || isLoopback(u) }

func isLoopback(u *url.URL) bool {
	h := u.Hostname()
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// parseChallenge reads `Bearer realm="...",service="...",scope="..."`.
// Malformed input yields what could be read; it is never trusted beyond
// choosing where to ask for a token.
func parseChallenge(h string) (scheme string, params map[string]string) {
	scheme, rest, _ := strings.Cut(strings.TrimSpace(h), " ")
	params = map[string]string{}
	for rest = strings.TrimSpace(rest); rest != ""; {
		key, after, ok := strings.Cut(rest, "=")
		if !ok {
			break
		}
		key = strings.ToLower(strings.TrimSpace(key))
		var val string
		if strings.HasPrefix(after, `"`) {
			var b strings.Builder
			i := 1
			for ; i < len(after) && after[i] != '"'; i++ {
				if after[i] == '\\' && i+1 < len(after) {
					i++
				}
				b.WriteByte(after[i])
			}
			val, rest = b.String(), after[min(i+1, len(after)):]
		} else {
			val, rest, _ = strings.Cut(after, ",")
			rest = "," + rest
		}
		params[key] = strings.TrimSpace(val)
		rest = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(rest), ","))
	}
	return strings.ToLower(scheme), params
}

// tokenCache keeps Authorization values (bearer tokens, basic credentials)
// per scope until shortly before they expire, so that a verification does
// not meet a challenge and ask the token service each time.
type tokenCache struct {
	mu sync.Mutex
	m  map[string]cachedToken
}

type cachedToken struct {
	authz   string
	expires time.Time
}

// maxTokens bounds the cache; it is cleared when full (one scope per
// repository, so this only happens on nodes running many repositories).
const maxTokens = 1024

func (c *tokenCache) get(scope string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.m[scope]
	if !ok || time.Now().After(t.expires) {
		return "", false
	}
	return t.authz, true
}

func (c *tokenCache) put(scope, authz string, ttl time.Duration) {
	if ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxTokens {
		c.m = map[string]cachedToken{}
	}
	c.m[scope] = cachedToken{authz: authz, expires: time.Now().Add(ttl)}
}

// limitedReader fails instead of truncating, so that an oversized token
// answer is an error rather than broken JSON.
type limitedReader struct {
	r io.Reader
	n int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, fmt.Errorf("answer larger than %d bytes", maxTokenBytes)
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}
