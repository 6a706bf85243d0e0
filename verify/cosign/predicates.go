package cosign

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"unicode"

	"github.com/nri-image-verifier/nri-image-verifier/policy"
)

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

// resolvePredicateType returns the predicate type URI that s names: the URI
// of a cosign short name, else s itself if it is an absolute URI.
func resolvePredicateType(s string) (string, error) {
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

// attestation is a required policy.Attestation ready to check: its
// predicate type resolved and its conditions compiled.
type attestation struct {
	// predicateType is the full predicate type URI.
	predicateType string
	conditions    []condition
}

// compileAttestation resolves and compiles a. On error, field says which
// field of a is wrong ("predicateType", "conditions[2]").
func compileAttestation(a policy.Attestation) (c *attestation, field string, err error) {
	pt, err := resolvePredicateType(a.PredicateType)
	if err != nil {
		return nil, "predicateType", err
	}
	if len(a.Conditions) > maxConditions {
		return nil, "conditions", fmt.Errorf("%d conditions, at most %d allowed", len(a.Conditions), maxConditions)
	}
	c = &attestation{predicateType: pt}
	for i, expr := range a.Conditions {
		cond, err := compileCondition(expr)
		if err != nil {
			return nil, fmt.Sprintf("conditions[%d]", i), err
		}
		c.conditions = append(c.conditions, cond)
	}
	return c, "", nil
}

// compiledAttestation is compileAttestation with the field in the error.
func compiledAttestation(a policy.Attestation) (*attestation, error) {
	c, field, err := compileAttestation(a)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	return c, nil
}

// checkAttestations checks that a rule's required attestations (at path,
// its with.attestations) compile.
func checkAttestations(e *policy.Errors, path string, w policy.With) {
	for i, a := range w.Attestations {
		if _, field, err := compileAttestation(a); err != nil {
			e.Add(fmt.Sprintf("%s[%d].%s", path, i, field), "%v", err)
		}
	}
}

// maxCompiled bounds a verifier's compiled attestations. The policy's
// rules hold far fewer; past the bound, attestations are compiled for each
// verification instead.
const maxCompiled = 1024

// attestations remembers the attestations a verifier has compiled, by
// content, so that a rule's conditions are compiled once per verifier
// (once per policy version) and not for every verification. An edited
// attestation has other content and is compiled afresh.
type attestations struct {
	mu sync.Mutex
	m  map[string]*attestation
}

// get returns a compiled; an error (a policy that did not pass Check)
// names the field and is never remembered.
func (c *attestations) get(a policy.Attestation) (*attestation, error) {
	key, err := json.Marshal(a)
	if err != nil {
		return compiledAttestation(a)
	}
	c.mu.Lock()
	compiled, ok := c.m[string(key)]
	c.mu.Unlock()
	if ok {
		return compiled, nil
	}
	compiled, err = compiledAttestation(a)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if prev, ok := c.m[string(key)]; ok {
		return prev, nil // compiled meanwhile by another verification
	}
	if c.m == nil {
		c.m = map[string]*attestation{}
	}
	if len(c.m) < maxCompiled {
		c.m[string(key)] = compiled
	}
	return compiled, nil
}
