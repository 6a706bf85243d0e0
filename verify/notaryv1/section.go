package notaryv1

import (
	"crypto"
	"crypto/ed25519"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/nri-image-verifier/nri-image-verifier/verify/keys"
)

// Section is the notaryv1 validator's part of validators.Check: the
// validator's settings compiled as New compiles them (its notary server
// URL, its registry CA, its pinned root keys), and its rules' delegation
// names.
var Section = policy.Section{Type: policy.TypeNotaryV1, Validator: func(e *policy.Errors, path string, v *policy.Validator) policy.RuleCheck {
	compile(e, path, v)
	return checkDelegations
}}

// DefaultServer is the server of a notaryv1 validator without host: Docker
// Hub's notary, as in Connaisseur.
const DefaultServer = "https://notary.docker.io"

const targetsPrefix = "targets/"

// delegationName is notary's delegation name grammar (tuf/data.IsDelegation)
// without the "targets/" prefix, and without empty or dot segments.
var delegationName = regexp.MustCompile(`^[-a-z0-9_]+(/[-a-z0-9_]+)*$`)

// settings is a notaryv1 validator's section compiled: what New builds the
// validator from.
type settings struct {
	// server is the notary server; nil when it is not a valid URL.
	server *url.URL
	// keys are the pinned root keys (ECDSA or RSA), by root name. A root
	// whose key did not parse, or that has none, is not in it.
	keys map[string]crypto.PublicKey
}

// compile checks and compiles v's settings, reporting each problem at its
// path under path (the validator's: "validators[2]", or "" for New). A
// `host` of the wrong shape is policy.Validate's to report.
func compile(e *policy.Errors, path string, v *policy.Validator) *settings {
	s := &settings{keys: map[string]crypto.PublicKey{}}
	u, err := serverURL(v)
	if err != nil && (v.Host == nil || *v.Host == (policy.Host{Server: v.Host.Server})) {
		e.Add(policy.Path(path, "host"), "%v", err)
	}
	s.server = u
	if v.Cert != "" {
		if _, err := cryptoutils.UnmarshalCertificatesFromPEM([]byte(v.Cert)); err != nil {
			e.Add(policy.Path(path, "cert"), "not PEM certificates: %v", err)
		}
	}
	for i := range v.TrustRoots {
		r := &v.TrustRoots[i]
		if r.Keyless != nil || r.Key == "" {
			continue // the shape: policy.Validate reports it
		}
		kpath := policy.Path(path, fmt.Sprintf("trustRoots[%d].key", i))
		pub, err := keys.Parse(r.Key)
		if err != nil {
			e.Add(kpath, "%v", err)
			continue
		}
		if _, ok := pub.(ed25519.PublicKey); ok {
			// Notary root keys are X.509 certificates of ECDSA or RSA keys.
			e.Add(kpath, "an Ed25519 key cannot be a notary root key (notary roots are ECDSA or RSA)")
			continue
		}
		s.keys[r.Name] = pub
	}
	return s
}

// checkDelegations checks a notaryv1 rule's delegation names (at path, its
// with).
func checkDelegations(e *policy.Errors, path string, w policy.With) {
	seen := map[string]int{}
	for i, d := range w.Delegations {
		dpath := policy.Path(path, fmt.Sprintf("delegations[%d]", i))
		role := delegationRole(d)
		name := strings.TrimPrefix(role, targetsPrefix)
		switch {
		case name == "":
			e.Add(dpath, "must not be empty")
		case len(role) > 255 || !delegationName.MatchString(name):
			e.Add(dpath, "%q is not a notary delegation name (lower-case letters, digits, '-' and '_', path segments separated by '/')", d)
		default:
			if j, dup := seen[role]; dup {
				e.Add(dpath, "delegation %q is listed twice (also delegations[%d])", role, j)
			} else {
				seen[role] = i
			}
		}
	}
}

// delegationRole returns the notary role of a with.delegations entry:
// "releases" and "targets/releases" both name the role "targets/releases"
// (Connaisseur's reading).
func delegationRole(name string) string {
	if strings.HasPrefix(name, targetsPrefix) {
		return name
	}
	return targetsPrefix + name
}

// serverURL returns the notary server of a notaryv1 validator: host as
// given, with https:// when it names no scheme (as Connaisseur reads it),
// or DefaultServer when host is unset. The URL has no trailing slash.
func serverURL(v *policy.Validator) (*url.URL, error) {
	raw := DefaultServer
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
