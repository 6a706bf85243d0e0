package policy

import (
	"crypto/ed25519"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/nri-image-verifier/nri-image-verifier/verify/keys"
)

// notaryV1Settings checks what a notaryv1 validator's settings say: its
// server URL, its registry CA and its root keys.
func (c *checker) notaryV1Settings(path string, v *Validator) {
	if v.Host == nil || *v.Host == (Host{Server: v.Host.Server}) {
		if _, err := NotaryServer(v); err != nil {
			c.Add(path+".host", "%v", err)
		}
	}
	if v.Cert != "" {
		if _, err := cryptoutils.UnmarshalCertificatesFromPEM([]byte(v.Cert)); err != nil {
			c.Add(path+".cert", "not PEM certificates: %v", err)
		}
	}
	for i := range v.TrustRoots {
		r := &v.TrustRoots[i]
		r.PublicKey = nil // never keep a key from an earlier Validate
		if r.Keyless != nil || r.Key == "" {
			continue
		}
		rpath := fmt.Sprintf("%s.trustRoots[%d]", path, i)
		pub, err := keys.Parse(r.Key)
		if err != nil {
			c.Add(rpath+".key", "%v", err)
			continue
		}
		if _, ok := pub.(ed25519.PublicKey); ok {
			// Notary root keys are X.509 certificates of ECDSA or RSA keys.
			c.Add(rpath+".key", "an Ed25519 key cannot be a notary root key (notary roots are ECDSA or RSA)")
			continue
		}
		r.PublicKey = pub
	}
}

// notaryV1Delegations checks a notaryv1 rule's delegation names.
func (c *checker) notaryV1Delegations(path string, w With) {
	seen := map[string]int{}
	for i, d := range w.Delegations {
		dpath := fmt.Sprintf("%s.delegations[%d]", path, i)
		role := NotaryDelegationRole(d)
		name := strings.TrimPrefix(role, notaryTargets)
		switch {
		case name == "":
			c.Add(dpath, "must not be empty")
		case len(role) > 255 || !delegationName.MatchString(name):
			c.Add(dpath, "%q is not a notary delegation name (lower-case letters, digits, '-' and '_', path segments separated by '/')", d)
		default:
			if j, dup := seen[role]; dup {
				c.Add(dpath, "delegation %q is listed twice (also delegations[%d])", role, j)
			} else {
				seen[role] = i
			}
		}
	}
}

// DefaultNotaryServer is the server of a notaryv1 validator without host:
// Docker Hub's notary, as in Connaisseur.
const DefaultNotaryServer = "https://notary.docker.io"

const notaryTargets = "targets/"

// delegationName is notary's delegation name grammar (tuf/data.IsDelegation)
// without the "targets/" prefix, and without empty or dot segments.
var delegationName = regexp.MustCompile(`^[-a-z0-9_]+(/[-a-z0-9_]+)*$`)

// NotaryDelegationRole returns the notary role of a with.delegations entry:
// "releases" and "targets/releases" both name the role "targets/releases"
// (Connaisseur's reading).
func NotaryDelegationRole(name string) string {
	if strings.HasPrefix(name, notaryTargets) {
		return name
	}
	return notaryTargets + name
}

// NotaryServer returns the notary server of a notaryv1 validator: host as
// given, with https:// when it names no scheme (as Connaisseur reads it),
// or DefaultNotaryServer when host is unset. The URL has no trailing slash.
func NotaryServer(v *Validator) (*url.URL, error) {
	raw := DefaultNotaryServer
	if v.Host != nil && strings.TrimSpace(v.Host.Server) != "" {
		raw = strings.TrimSpace(v.Host.Server)
	}
	if !strings.Contains(raw, "://") {
		raw = "https://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("not a URL: %w", err)
	}
	u.Scheme = strings.ToLower(u.Scheme)
	switch {
	case u.Scheme != "https" && u.Scheme != "http":
		return nil, fmt.Errorf("%q: scheme must be https or http", raw)
	case u.Hostname() == "":
		return nil, fmt.Errorf("%q: no host", raw)
	case u.User != nil:
		// Credentials come from the docker config, never from the policy.
		return nil, fmt.Errorf("%q: credentials in the URL are not allowed", u.Redacted())
	case u.RawQuery != "" || u.Fragment != "" || u.Opaque != "":
		return nil, fmt.Errorf("%q: a query or fragment is not allowed", raw)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}
