package policy

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// A Section is one validator type's part of Validate. Validate checks the
// file's shape around it (names, references, modes, patterns, which fields
// each type takes and which it requires); the Section checks what the
// type's settings say (keys, keyless identities, Sigstore material,
// certificates, option values) by compiling them. Each verify/<type>
// package exports its Section, built on the very function its New compiles
// a validator with, so that a policy that passes can be built.
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

// Validate checks p: its shape, which this package knows, and, for each
// validator whose type has one of sections, what that section finds. With
// no sections only the shape is checked; verify/validators.Check runs every
// type's section, and is what a policy must pass to be used. Validate
// changes nothing in p. The error joins one *FieldError per problem, in the
// order of the file.
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
	case TypeCosign, TypeNotaryV1, TypeNotation:
		if v.Approve != nil {
			c.Add(path+".approve", "only static validators take approve")
		}
		c.host(path, v)
		c.trustRoots(path, v)
		if v.Type == TypeCosign && v.TrustedRoot != "" && !v.hasKeyless() {
			c.Add(path+".trustedRoot", "only keyless trust roots use a trusted root, and validator %q has none", v.Name)
		}
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

// host checks the shape of `host`, which each type writes differently.
func (c *checker) host(path string, v *Validator) {
	if v.Host == nil {
		return
	}
	switch v.Type {
	case TypeCosign:
		if v.Host.Server != "" {
			c.Add(path+".host", "a cosign validator takes an object (rekor, rekorPubkey, fulcioCert, ctLogPubkey), not a server name")
		}
	case TypeNotaryV1:
		if *v.Host != (Host{Server: v.Host.Server}) {
			c.Add(path+".host", "a notaryv1 validator takes the notary server URL as a string, not an object")
		}
	case TypeNotation:
		c.Add(path+".host", "a notation validator takes no host (signatures are read from the image's registry)")
	}
}

// trustRoots checks the names of a validator's trust roots and which
// fields each root has for the validator's type.
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
		if v.Type == TypeNotation {
			c.certRoot(rpath, r)
		} else {
			c.keyRoot(rpath, r, v.Type)
		}
	}
}

// keyRoot checks a cosign or notaryv1 root: a key, or (cosign) a keyless
// identity.
func (c *checker) keyRoot(path string, r *TrustRoot, typ string) {
	if r.Cert != "" || r.TSCert != "" {
		c.Add(path, "cert and tsCert belong to notation trust roots; a %s trust root takes key", typ)
	}
	switch {
	case r.Keyless != nil && typ == TypeNotaryV1:
		c.Add(path+".keyless", "a notaryv1 trust root is the repository's root public key (key), not a keyless identity")
	case r.Keyless != nil && r.Key != "":
		c.Add(path, "give key or keyless, not both")
	case r.Keyless == nil && r.Key == "":
		c.Add(path+".key", "required (an inline PEM public key)")
	}
}

// certRoot checks a notation root: X.509 certificates, never keys.
func (c *checker) certRoot(path string, r *TrustRoot) {
	if r.Key != "" {
		c.Add(path+".key", "a notation trust root is X.509 certificates (cert), not a public key")
	}
	if r.Keyless != nil {
		c.Add(path+".keyless", "a notation trust root is X.509 certificates (cert), not a keyless identity")
	}
	if strings.TrimSpace(r.Cert) == "" {
		c.Add(path+".cert", "required (PEM CA certificates, or a self-signed signing certificate)")
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
	default:
		c.with(path+".with", r.With, v)
		if check := c.rules[v]; check != nil {
			check(&c.Errors, path+".with", r.With)
		}
	}
}

// with checks which of a rule's options its validator's type takes, and
// the trust roots they name.
func (c *checker) with(path string, w With, v *Validator) {
	switch v.Type {
	case TypeStatic:
		// Options on a static rule are ignored with a warning (Warnings),
		// as Connaisseur ignores them.
	case TypeCosign:
		c.selection(path, w, v)
		c.noDelegations(path, w)
	case TypeNotaryV1:
		c.notaryV1With(path, w, v)
	case TypeNotation:
		// trustRoot, threshold and required mean what they mean for cosign.
		c.selection(path, w, v)
		c.noDelegations(path, w)
		c.noTransparency(path, w)
	}
	if v.Type != TypeNotation && v.Type != TypeStatic {
		if w.VerificationLevel != "" {
			c.Add(path+".verificationLevel", "only notation validators take a verification level (validator %q is %s)", v.Name, v.Type)
		}
		if w.VerifyTimestamp != "" {
			c.Add(path+".verifyTimestamp", "only notation validators take verifyTimestamp (validator %q is %s)", v.Name, v.Type)
		}
		if len(w.TrustedIdentities) > 0 {
			c.Add(path+".trustedIdentities", "only notation validators take trusted identities (validator %q is %s)", v.Name, v.Type)
		}
	}
	if len(w.Attestations) > 0 && v.Type != TypeCosign {
		c.Add(path+".attestations", "only cosign validators take attestations (validator %q is %s)", v.Name, v.Type)
	}
}

// selection checks trustRoot, required and threshold (cosign, notation).
func (c *checker) selection(path string, w With, v *Validator) {
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
}

func (c *checker) noDelegations(path string, w With) {
	if len(w.Delegations) > 0 {
		c.Add(path+".delegations", "delegations are for notaryv1 validators")
	}
}

func (c *checker) noTransparency(path string, w With) {
	if w.VerifyInTransparencyLog != nil || w.VerifySCT != nil {
		c.Add(path, "verifyInTransparencyLog and verifySCT are for cosign validators")
	}
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
	c.noTransparency(path, w)
}

func isZeroWith(w With) bool {
	return w.TrustRoot == "" && w.Threshold == nil && len(w.Required) == 0 &&
		w.VerifyInTransparencyLog == nil && w.VerifySCT == nil && w.Mode == "" &&
		len(w.Delegations) == 0 && len(w.Attestations) == 0 &&
		w.VerificationLevel == "" && len(w.TrustedIdentities) == 0 && w.VerifyTimestamp == ""
}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

func isDNSLabel(s string) bool { return len(s) <= 63 && dnsLabel.MatchString(s) }
