package policy

import (
	"crypto/ed25519"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/nri-image-verifier/nri-image-verifier/verify/keys"
)

// A Section is one validator type's part of Validate. Validate checks the
// file's shape around it; the Section checks what the type's settings say
// by compiling them. Each verify/<type> package exports its Section, built
// on the very function its New compiles a validator with, so that a policy
// that passes can be built.
type Section struct {
	// Type is the validator type the section checks (TypeCosign, ...).
	Type string
	// Validator checks v, a validator of Type found at path (for instance
	// "validators[2]"), after Validate's own checks of it. It returns the
	// check of the rules that use v, or nil when they need none.
	Validator func(e *Errors, path string, v *Validator) RuleCheck
}

// RuleCheck checks the options w of a rule, at path (for instance
// "policy[3].with"), that uses the validator a Section was given. It runs
// after Validate's own checks of the rule.
type RuleCheck func(e *Errors, path string, w With)

// Validate checks the policy and fills in what is derived from it
// (TrustRoot.PublicKey), then, for each validator whose type has one of
// sections, asks that section. Parse calls it; call it yourself for a
// Policy built in code. The error joins one *FieldError per problem, in
// the order of the file.
func (p *Policy) Validate(sections ...Section) error {
	c := checker{sections: map[string]Section{}, rules: map[*Validator]RuleCheck{}}
	for _, s := range sections {
		c.sections[s.Type] = s
	}
	c.mode("mode", p.Mode)
	if len(p.Validators) == 0 {
		c.Add("validators", "at least one validator is required")
	}
	if len(p.Rules) == 0 {
		c.Add("policy", "at least one rule is required")
	}
	firstByName := map[string]int{}
	for i := range p.Validators {
		path := fmt.Sprintf("validators[%d]", i)
		v := &p.Validators[i]
		if v.Name == "" {
			c.Add(path+".name", "must not be empty")
		} else if j, dup := firstByName[v.Name]; dup {
			c.Add(path+".name", "duplicate validator name %q (also validators[%d])", v.Name, j)
		} else {
			firstByName[v.Name] = i
		}
		c.validator(path, v)
	}
	for i := range p.Rules {
		c.rule(p, i)
	}
	return c.Err()
}

// checker is one Validate run: the problems found, the sections to ask,
// and the rule checks the sections returned, by validator.
type checker struct {
	Errors
	sections map[string]Section
	rules    map[*Validator]RuleCheck
}

func (c *checker) mode(path string, m Mode) {
	if m != "" && m != ModeEnforce && m != ModeAudit {
		c.Add(path, "unknown mode %q (want %q or %q)", m, ModeEnforce, ModeAudit)
	}
}

func (c *checker) validator(path string, v *Validator) {
	if v.TrustedRoot != "" && v.Type != TypeCosign {
		c.Add(path+".trustedRoot", "only cosign validators (with keyless trust roots) take a trusted root")
	}
	switch v.Type {
	case TypeStatic:
		if v.Approve == nil {
			c.Add(path+".approve", "required for a static validator (true or false)")
		}
		if len(v.TrustRoots) > 0 {
			c.Add(path+".trustRoots", "a static validator takes no trust roots")
		}
	case TypeCosign:
		c.cosign(path, v)
	case TypeNotaryV1:
		c.notaryV1(path, v)
	case TypeNotation:
		c.notation(path, v)
	case "":
		c.Add(path+".type", "must be set (%q, %q, %q or %q)", TypeStatic, TypeCosign, TypeNotaryV1, TypeNotation)
	default:
		c.Add(path+".type", "unknown validator type %q (want %q, %q, %q or %q)", v.Type, TypeStatic, TypeCosign, TypeNotaryV1, TypeNotation)
	}
	if s, ok := c.sections[v.Type]; ok && s.Validator != nil {
		if check := s.Validator(&c.Errors, path, v); check != nil {
			c.rules[v] = check
		}
	}
}

func (c *checker) cosign(path string, v *Validator) {
	if v.Approve != nil {
		c.Add(path+".approve", "only static validators take approve")
	}
	if v.Host != nil && v.Host.Server != "" {
		c.Add(path+".host", "a cosign validator takes an object (rekor, rekorPubkey, fulcioCert, ctLogPubkey), not a server name")
	}
	if v.Cert != "" {
		if _, err := cryptoutils.UnmarshalCertificatesFromPEM([]byte(v.Cert)); err != nil {
			c.Add(path+".cert", "not PEM certificates: %v", err)
		}
	}
	c.trustRoots(path, v)
	c.sigstore(path, v)
}

// trustRoots checks the named keys of a cosign or notaryv1 validator.
func (c *checker) trustRoots(path string, v *Validator) {
	if len(v.TrustRoots) == 0 {
		c.Add(path+".trustRoots", "a %s validator needs at least one trust root", v.Type)
	}
	firstByName := map[string]int{}
	for i := range v.TrustRoots {
		rpath := fmt.Sprintf("%s.trustRoots[%d]", path, i)
		r := &v.TrustRoots[i]
		if r.Name == "" {
			c.Add(rpath+".name", "must not be empty")
		} else if j, dup := firstByName[r.Name]; dup {
			c.Add(rpath+".name", "duplicate trust root name %q (also trustRoots[%d])", r.Name, j)
		} else {
			firstByName[r.Name] = i
		}
		c.trustRoot(rpath, r, v.Type)
	}
}

func (c *checker) trustRoot(path string, r *TrustRoot, typ string) {
	r.PublicKey = nil // never keep a key from an earlier Validate
	if r.Cert != "" || r.TSCert != "" {
		c.Add(path, "cert and tsCert belong to notation trust roots; a %s trust root takes key", typ)
	}
	switch {
	case r.Keyless != nil && typ == TypeNotaryV1:
		c.Add(path+".keyless", "a notaryv1 trust root is the repository's root public key (key), not a keyless identity")
	case r.Keyless != nil && r.Key != "":
		c.Add(path, "give key or keyless, not both")
	case r.Keyless != nil:
		c.keyless(path+".keyless", r.Keyless)
	case r.Key == "":
		c.Add(path+".key", "required (an inline PEM public key)")
	default:
		pub, err := keys.Parse(r.Key)
		if err != nil {
			c.Add(path+".key", "%v", err)
			return
		}
		if _, ok := pub.(ed25519.PublicKey); ok && typ == TypeNotaryV1 {
			// Notary root keys are X.509 certificates of ECDSA or RSA keys.
			c.Add(path+".key", "an Ed25519 key cannot be a notary root key (notary roots are ECDSA or RSA)")
			return
		}
		r.PublicKey = pub
	}
}

func (c *checker) rule(p *Policy, idx int) {
	path, r := fmt.Sprintf("policy[%d]", idx), &p.Rules[idx]
	if err := checkPattern(r.Pattern); err != nil {
		c.Add(path+".pattern", "%q: %v", r.Pattern, err)
	}
	for i, ns := range r.Namespaces {
		if !isDNSLabel(ns) {
			c.Add(fmt.Sprintf("%s.namespaces[%d]", path, i), "%q is not a valid namespace name (DNS-1123 label: lower-case letters, digits and '-', at most 63)", ns)
		}
	}
	c.mode(path+".mode", r.Mode)
	switch r.With.Mode {
	case "", "mutate", "insecureValidateOnly":
	default:
		c.Add(path+".with.mode", "unknown mode %q (want \"mutate\" or \"insecureValidateOnly\"; both are ignored at the node)", r.With.Mode)
	}
	v := p.Validator(r.validatorName())
	switch {
	case v == nil && r.Validator == "":
		c.Add(path+".validator", "not set, and there is no validator named %q to default to", DefaultName)
	case v == nil:
		c.Add(path+".validator", "no validator named %q", r.Validator)
	case v.Type == TypeStatic:
		if !isZeroWith(r.With) {
			c.Add(path+".with", "validator %q is static and takes no options", v.Name)
		}
	case v.Type == TypeCosign:
		c.cosignWith(path+".with", r.With, v)
	case v.Type == TypeNotaryV1:
		c.notaryV1With(path+".with", r.With, v)
	case v.Type == TypeNotation:
		// trustRoot, threshold and required mean what they mean for cosign.
		c.cosignWith(path+".with", r.With, v)
		if r.With.VerifyInTransparencyLog != nil || r.With.VerifySCT != nil {
			c.Add(path+".with", "verifyInTransparencyLog and verifySCT are for cosign validators")
		}
	}
	if v != nil && v.Type != TypeNotation && v.Type != TypeStatic {
		if r.With.VerificationLevel != "" {
			c.Add(path+".with.verificationLevel", "only notation validators take a verification level (validator %q is %s)", v.Name, v.Type)
		}
		if r.With.VerifyTimestamp != "" {
			c.Add(path+".with.verifyTimestamp", "only notation validators take verifyTimestamp (validator %q is %s)", v.Name, v.Type)
		}
		if len(r.With.TrustedIdentities) > 0 {
			c.Add(path+".with.trustedIdentities", "only notation validators take trusted identities (validator %q is %s)", v.Name, v.Type)
		}
	}
	if v != nil {
		c.attestations(path+".with.attestations", r.With, v)
		if check := c.rules[v]; check != nil {
			check(&c.Errors, path+".with", r.With)
		}
	}
}

func (c *checker) cosignWith(path string, w With, v *Validator) {
	selected := w.Selected(v)
	if w.TrustRoot != AllTrustRoots && v.TrustRoot(selected[0]) == nil {
		c.Add(path+".trustRoot", "validator %q has no trust root named %q", v.Name, selected[0])
	}
	for i, name := range w.Required {
		rpath := fmt.Sprintf("%s.required[%d]", path, i)
		switch {
		case v.TrustRoot(name) == nil:
			c.Add(rpath, "validator %q has no trust root named %q", v.Name, name)
		case !slices.Contains(selected, name):
			c.Add(rpath, "trust root %q is not selected by trustRoot %q", name, selected[0])
		case slices.Index(w.Required, name) < i:
			c.Add(rpath, "trust root %q is listed twice", name)
		}
	}
	if w.Threshold != nil {
		t := *w.Threshold
		switch {
		case t < 1:
			c.Add(path+".threshold", "%d is less than 1", t)
		case t > len(selected):
			c.Add(path+".threshold", "%d is more than the %d selected trust root(s)", t, len(selected))
		case t < len(w.Required):
			c.Add(path+".threshold", "%d is less than the %d required trust roots", t, len(w.Required))
		}
	}
	if len(w.Delegations) > 0 {
		c.Add(path+".delegations", "delegations are for notaryv1 validators")
	}
	c.keylessWith(path, w, v, selected)
}

func (c *checker) notaryV1(path string, v *Validator) {
	if v.Approve != nil {
		c.Add(path+".approve", "only static validators take approve")
	}
	if v.Host != nil && *v.Host != (Host{Server: v.Host.Server}) {
		c.Add(path+".host", "a notaryv1 validator takes the notary server URL as a string, not an object")
	} else if _, err := NotaryServer(v); err != nil {
		c.Add(path+".host", "%v", err)
	}
	if v.Cert != "" {
		if _, err := cryptoutils.UnmarshalCertificatesFromPEM([]byte(v.Cert)); err != nil {
			c.Add(path+".cert", "not PEM certificates: %v", err)
		}
	}
	c.trustRoots(path, v)
}

func (c *checker) notaryV1With(path string, w With, v *Validator) {
	selected := w.Selected(v)
	if w.TrustRoot != AllTrustRoots && v.TrustRoot(selected[0]) == nil {
		c.Add(path+".trustRoot", "validator %q has no trust root named %q", v.Name, selected[0])
	}
	// Connaisseur's notaryv1 validator has no threshold: every selected
	// root key must have signed the root metadata. Accepting the cosign
	// options here would suggest otherwise.
	if w.Threshold != nil {
		c.Add(path+".threshold", "threshold is for cosign validators; a notaryv1 rule needs every selected root key")
	}
	if len(w.Required) > 0 {
		c.Add(path+".required", "required is for cosign validators; a notaryv1 rule needs every selected root key")
	}
	if w.VerifyInTransparencyLog != nil || w.VerifySCT != nil {
		c.Add(path, "verifyInTransparencyLog and verifySCT are for cosign validators")
	}
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

// TypeNotaryV1 is the Notary v1 (Docker Content Trust) validator type.
const TypeNotaryV1 = "notaryv1"

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

func isZeroWith(w With) bool {
	return w.TrustRoot == "" && w.Threshold == nil && len(w.Required) == 0 &&
		w.VerifyInTransparencyLog == nil && w.VerifySCT == nil && w.Mode == "" &&
		len(w.Delegations) == 0 && len(w.Attestations) == 0 &&
		w.VerificationLevel == "" && len(w.TrustedIdentities) == 0 && w.VerifyTimestamp == ""
}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

func isDNSLabel(s string) bool { return len(s) <= 63 && dnsLabel.MatchString(s) }

// notation checks the shape of a notation (Notary Project v2) validator:
// its trust roots are X.509 certificates (cert, and tsCert for
// timestamping), never keys. What the certificates say is verify/notation's
// to check.
func (c *checker) notation(path string, v *Validator) {
	if v.Approve != nil {
		c.Add(path+".approve", "only static validators take approve")
	}
	if v.Host != nil {
		c.Add(path+".host", "a notation validator takes no host (signatures are read from the image's registry)")
	}
	if len(v.TrustRoots) == 0 {
		c.Add(path+".trustRoots", "a notation validator needs at least one trust root")
	}
	firstByName := map[string]int{}
	for i := range v.TrustRoots {
		rpath := fmt.Sprintf("%s.trustRoots[%d]", path, i)
		r := &v.TrustRoots[i]
		r.PublicKey = nil // notation roots are certificates; never keep a key
		if r.Name == "" {
			c.Add(rpath+".name", "must not be empty")
		} else if j, dup := firstByName[r.Name]; dup {
			c.Add(rpath+".name", "duplicate trust root name %q (also trustRoots[%d])", r.Name, j)
		} else {
			firstByName[r.Name] = i
		}
		if r.Key != "" {
			c.Add(rpath+".key", "a notation trust root is X.509 certificates (cert), not a public key")
		}
		if r.Keyless != nil {
			c.Add(rpath+".keyless", "a notation trust root is X.509 certificates (cert), not a keyless identity")
		}
		if strings.TrimSpace(r.Cert) == "" {
			c.Add(rpath+".cert", "required (PEM CA certificates, or a self-signed signing certificate)")
		}
	}
}
