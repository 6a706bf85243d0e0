package policy

import (
	"fmt"
	"net/url"
	"strings"
	"unicode"
)

// Attestation is one in-toto attestation a rule requires.
type Attestation struct {
	// PredicateType is the in-toto predicate type: a URI, e.g.
	// "https://slsa.dev/provenance/v1", or one of cosign's short names
	// (see predicateTypes).
	PredicateType string `json:"predicateType"`
	// Conditions are CEL expressions over the predicate that must all
	// hold (see attestcel.go for the language).
	Conditions []string `json:"conditions,omitempty"`

	// compiled is filled by Validate; see Compiled.
	compiled *CompiledAttestation
}

// predicateTypes maps cosign's short predicate type names (`cosign attest
// --type`) to the URIs they stand for. Taken from cosign v3.1.1,
// cmd/cosign/cli/options/predicate.go (PredicateTypeMap); the values are
// in-toto-golang v0.11.0's constants and cosign's pkg/cosign/attestation.
var predicateTypes = map[string]string{
	"custom":           "https://cosign.sigstore.dev/attestation/v1",
	"slsaprovenance":   "https://slsa.dev/provenance/v0.2",
	"slsaprovenance02": "https://slsa.dev/provenance/v0.2",
	"slsaprovenance1":  "https://slsa.dev/provenance/v1",
	"spdx":             "https://spdx.dev/Document",
	"spdxjson":         "https://spdx.dev/Document",
	"cyclonedx":        "https://cyclonedx.org/bom",
	"link":             "https://in-toto.io/Link/v1",
	"vuln":             "https://cosign.sigstore.dev/attestation/vuln/v1",
	"openvex":          "https://openvex.dev/ns",
}

// maxConditions bounds the conditions of one attestation: each is a
// program run for every candidate attestation of the type.
const maxConditions = 64

// ResolvePredicateType returns the predicate type URI that s names: the URI
// of a cosign short name, else s itself if it is an absolute URI.
func ResolvePredicateType(s string) (string, error) {
	if uri, ok := predicateTypes[s]; ok {
		return uri, nil
	}
	if s == "" {
		return "", fmt.Errorf("must not be empty (a URI such as %q, or a cosign short name such as %q)", predicateTypes["slsaprovenance1"], "slsaprovenance1")
	}
	if strings.IndexFunc(s, unicode.IsSpace) >= 0 {
		return "", fmt.Errorf("%q contains white space", s)
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || (u.Host == "" && u.Opaque == "") {
		return "", fmt.Errorf("%q is neither an absolute URI nor one of cosign's short names (%s)", s, shortNames())
	}
	return s, nil
}

func shortNames() string {
	return "custom, slsaprovenance, slsaprovenance02, slsaprovenance1, spdx, spdxjson, cyclonedx, link, vuln, openvex"
}

// Compiled returns the attestation ready to check: its predicate type
// resolved and its conditions compiled. Validate compiles them once; for an
// Attestation that never went through Validate (a Policy built in code
// without it), they are compiled now, so an invalid one still fails closed.
func (a Attestation) Compiled() (*CompiledAttestation, error) {
	if a.compiled != nil {
		return a.compiled, nil
	}
	c, field, err := compileAttestation(a)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	return c, nil
}

// CompiledAttestation is an Attestation ready to check.
type CompiledAttestation struct {
	// PredicateType is the full predicate type URI.
	PredicateType string
	conditions    []condition
}

// compileAttestation resolves and compiles a. On error, field says which
// field of a is wrong ("predicateType", "conditions[2]").
func compileAttestation(a Attestation) (c *CompiledAttestation, field string, err error) {
	pt, err := ResolvePredicateType(a.PredicateType)
	if err != nil {
		return nil, "predicateType", err
	}
	if len(a.Conditions) > maxConditions {
		return nil, "conditions", fmt.Errorf("%d conditions, at most %d allowed", len(a.Conditions), maxConditions)
	}
	c = &CompiledAttestation{PredicateType: pt}
	for i, expr := range a.Conditions {
		cond, err := compileCondition(expr)
		if err != nil {
			return nil, fmt.Sprintf("conditions[%d]", i), err
		}
		c.conditions = append(c.conditions, cond)
	}
	return c, "", nil
}

// attestations checks a rule's required attestations and compiles them.
func (c *checker) attestations(path string, w With, v *Validator) {
	if len(w.Attestations) == 0 {
		return
	}
	if v.Type != TypeCosign {
		c.Add(path, "only cosign validators take attestations (validator %q is %s)", v.Name, v.Type)
		return
	}
	for i := range w.Attestations {
		// w is a copy, its Attestations are not: compile into the policy.
		a := &w.Attestations[i]
		a.compiled = nil // never keep programs from an earlier Validate
		compiled, field, err := compileAttestation(*a)
		if err != nil {
			c.Add(fmt.Sprintf("%s[%d].%s", path, i, field), "%v", err)
			continue
		}
		a.compiled = compiled
	}
}
