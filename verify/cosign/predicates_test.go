package cosign

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/nri-image-verifier/nri-image-verifier/policy"
)

const slsaV1 = "https://slsa.dev/provenance/v1"

// A policy with attestations loads, short names resolve, and a verifier
// compiles the conditions once and then hands out those programs.
func TestAttestationsLoad(t *testing.T) {
	p := mustParse(t, cosignHead+`
policy:
- pattern: "reg.io/app/*"
  with:
    attestations:
    - predicateType: slsaprovenance1
      conditions:
      - "predicate.runDetails.builder.id == 'https://ci.example/builder'"
      - "predicateType.startsWith('https://slsa.dev/')"
    - predicateType: cyclonedx
    - predicateType: https://example.com/custom/v2
      conditions: ["subject.exists(s, has(s.digest.sha256))"]
`)
	as := p.Rules[0].With.Attestations
	want := []string{slsaV1, "https://cyclonedx.org/bom", "https://example.com/custom/v2"}
	var v Verifier
	for i, a := range as {
		compiled, err := v.attestations.get(a)
		if err != nil {
			t.Fatalf("attestations[%d]: not compiled: %v", i, err)
		}
		if compiled.predicateType != want[i] || len(compiled.conditions) != len(a.Conditions) {
			t.Errorf("attestations[%d]: compiled %q with %d conditions, want %q with %d", i, compiled.predicateType, len(compiled.conditions), want[i], len(a.Conditions))
		}
		// The verifier hands out the programs it compiled, not new ones.
		if c, err := v.attestations.get(a); err != nil || c != compiled {
			t.Errorf("attestations[%d]: get() = %p, %v; want the first %p", i, c, err, compiled)
		}
	}
}

func TestAttestationsInvalid(t *testing.T) {
	head := cosignHead + `
- name: notary
  type: notaryv1
  trustRoots: [{name: default, key: KEY_P256}]
`
	for _, tc := range []struct {
		name, rule string
		want       []string
	}{
		{"bad CEL", `{pattern: '*', with: {attestations: [{predicateType: spdx}, {predicateType: spdx, conditions: ["predicate.name =="]}]}}`,
			[]string{"policy[0].with.attestations[1].conditions[0]: ", "is not a valid condition", "(column "}},
		{"not bool", `{pattern: '*', with: {attestations: [{predicateType: spdx, conditions: ["predicate.name"]}]}}`,
			[]string{"policy[0].with.attestations[0].conditions[0]: ", "has type dyn, want bool"}},
		{"string result", `{pattern: '*', with: {attestations: [{predicateType: spdx, conditions: ["'a' + 'b'"]}]}}`,
			[]string{"conditions[0]: ", "has type string, want bool"}},
		{"unknown variable", `{pattern: '*', with: {attestations: [{predicateType: spdx, conditions: ["statement.x == 1"]}]}}`,
			[]string{"conditions[0]: ", "undeclared reference to 'statement'"}},
		{"unknown function", `{pattern: '*', with: {attestations: [{predicateType: spdx, conditions: ["predicate.name.lowerAscii() == 'a'"]}]}}`,
			[]string{"conditions[0]: ", "lowerAscii"}},
		{"bad constant regex", `{pattern: '*', with: {attestations: [{predicateType: spdx, conditions: ["predicate.name.matches('[')"]}]}}`,
			[]string{"conditions[0]: "}},
		{"empty condition", `{pattern: '*', with: {attestations: [{predicateType: spdx, conditions: ["  "]}]}}`,
			[]string{"conditions[0]: must not be empty"}},
		{"too long", `{pattern: '*', with: {attestations: [{predicateType: spdx, conditions: ["` + strings.Repeat("true && ", 600) + `true"]}]}}`,
			[]string{"conditions[0]: is 4804 characters long, at most 4096 allowed"}},
		{"empty predicateType", `{pattern: '*', with: {attestations: [{conditions: ["true"]}]}}`,
			[]string{"policy[0].with.attestations[0].predicateType: must not be empty"}},
		{"unknown short name", `{pattern: '*', with: {attestations: [{predicateType: slsa}]}}`,
			[]string{"attestations[0].predicateType: \"slsa\" is neither an absolute URI nor one of cosign's short names"}},
		{"relative URI", `{pattern: '*', with: {attestations: [{predicateType: /provenance/v1}]}}`,
			[]string{"attestations[0].predicateType: "}},
		{"static rule", `{pattern: '*', validator: allow, with: {attestations: [{predicateType: spdx}]}}`,
			[]string{`policy[0].with.attestations: only cosign validators take attestations (validator "allow" is static)`}},
		{"notaryv1 rule", `{pattern: '*', validator: notary, with: {attestations: [{predicateType: spdx}]}}`,
			[]string{`policy[0].with.attestations: only cosign validators take attestations (validator "notary" is notaryv1)`}},
		{"unknown field", `{pattern: '*', with: {attestations: [{predicateType: spdx, condition: ["true"]}]}}`,
			[]string{`policy[0].with.attestations[0]: unknown field "condition"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse(t, head+"policy:\n- "+tc.rule+"\n")
			if err == nil {
				t.Fatal("parsed, want an error")
			}
			t.Logf("%v", err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// A check of the same policy again does not keep stale programs: a
// condition edited in code is recompiled, by Check and by the verifier.
func TestAttestationsRevalidate(t *testing.T) {
	p := mustParse(t, cosignHead+"policy: [{pattern: '*', with: {attestations: [{predicateType: spdx, conditions: ['true']}]}}]")
	var v Verifier
	if _, err := v.attestations.get(p.Rules[0].With.Attestations[0]); err != nil {
		t.Fatal(err)
	}
	p.Rules[0].With.Attestations[0].Conditions = []string{"predicate.name"}
	if err := checkPolicy(p); err == nil || !strings.Contains(err.Error(), "want bool") {
		t.Fatalf("Validate after edit: %v, want a type error", err)
	}
	if _, err := v.attestations.get(p.Rules[0].With.Attestations[0]); err == nil {
		t.Fatal("the verifier kept the old program for an edited condition")
	}
}

// An Attestation compiles on demand, and fails closed when invalid.
func TestAttestationCompiledWithoutValidate(t *testing.T) {
	c, err := compiledAttestation(policy.Attestation{PredicateType: "spdxjson", Conditions: []string{"true"}})
	if err != nil || c.predicateType != "https://spdx.dev/Document" {
		t.Fatalf("compiledAttestation() = %+v, %v", c, err)
	}
	_, err = compiledAttestation(policy.Attestation{PredicateType: "spdx", Conditions: []string{"1"}})
	if err == nil || !strings.HasPrefix(err.Error(), "conditions[0]: ") {
		t.Fatalf("compiledAttestation() of a non-bool condition: %v", err)
	}
}

func mustPredicate(t testing.TB, js string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(js), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestConditionCheck(t *testing.T) {
	pred := mustPredicate(t, `{
		"runDetails": {"builder": {"id": "https://github.com/org/repo/.github/workflows/release.yml@refs/tags/v1.2.3"}},
		"buildDefinition": {"buildType": "https://slsa-framework.github.io/github-actions-buildtypes/workflow/v1", "internalParameters": {"runs": 3}},
		"packages": [{"name": "openssl", "version": "3.0.13"}, {"name": "zlib", "version": "1.3"}]
	}`)
	st := statement{
		PredicateType: slsaV1,
		Predicate:     pred,
		Subject:       []statementSubject{{Name: "reg.io/app", Digest: map[string]string{"sha256": strings.Repeat("ab", 32)}}},
	}
	for _, tc := range []struct {
		expr string
		want string // "" holds; "false": is false; else the error has it
	}{
		{`predicate.runDetails.builder.id.startsWith("https://github.com/org/repo/")`, ""},
		{`predicate.runDetails.builder.id.matches("^https://github\\.com/org/repo/\\.github/workflows/release\\.yml@refs/tags/v[0-9.]+$")`, ""},
		{`predicate.runDetails.builder.id.matches("^https://gitlab\\.com/")`, "false"},
		{`predicate.runDetails.builder.id == "https://evil.example/builder"`, "false"},
		{`predicate.buildDefinition.internalParameters.runs == 3`, ""},
		{`predicate.buildDefinition.internalParameters.runs > 2`, ""},
		{`predicate.packages.exists(p, p.name == "openssl" && p.version.startsWith("3."))`, ""},
		{`!predicate.packages.exists(p, p.name == "log4j")`, ""},
		{`predicate.packages.all(p, has(p.version))`, ""},
		{`has(predicate.runDetails.metadata)`, "false"},
		{`predicateType == "https://slsa.dev/provenance/v1"`, ""},
		{`subject.exists(s, s.digest.sha256 == "` + strings.Repeat("ab", 32) + `")`, ""},
		{`predicate.runDetails.builder.version == "1"`, "no such key: version"},
		{`predicate.packages[5].name == "x"`, "index out of bounds"},
	} {
		t.Run(tc.expr, func(t *testing.T) {
			c, err := compiledAttestation(policy.Attestation{PredicateType: "slsaprovenance1", Conditions: []string{"true", tc.expr}})
			if err != nil {
				t.Fatal(err)
			}
			err = c.check(context.Background(), st)
			var ce *conditionError
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Check: %v, want nil", err)
			case tc.want == "":
			case !errors.As(err, &ce) || ce.Expr != tc.expr:
				t.Fatalf("Check: %v, want a conditionError for %q", err, tc.expr)
			case tc.want == "false" && (ce.Err != nil || err.Error() != fmt.Sprintf("condition %q is false", tc.expr)):
				t.Fatalf("Check: %v, want it false", err)
			case tc.want != "false" && (ce.Err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Check: %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// A condition that walks too much stops at the cost limit with an error,
// which denies; so does one whose context ends.
func TestConditionCostLimit(t *testing.T) {
	big := make([]any, 20000)
	for i := range big {
		big[i] = map[string]any{"name": "p", "deps": []any{"a", "b", "c"}}
	}
	c, err := compiledAttestation(policy.Attestation{PredicateType: "spdx", Conditions: []string{
		`predicate.all(a, predicate.all(b, a.name == b.name))`,
	}})
	if err != nil {
		t.Fatal(err)
	}
	err = c.check(context.Background(), statement{Predicate: big})
	if err == nil || !strings.Contains(err.Error(), "cost limit") {
		t.Fatalf("Check: %v, want the cost limit to stop it", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c, err = compiledAttestation(policy.Attestation{PredicateType: "spdx", Conditions: []string{`predicate.all(a, a.name == "p")`}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.check(ctx, statement{Predicate: big}); err == nil {
		t.Fatal("Check with a cancelled context passed")
	}
}

// The short names the error message lists are exactly those resolved, and
// each resolves to an absolute URI.
func TestPredicateShortNames(t *testing.T) {
	listed := strings.Split(shortNames(), ", ")
	if len(listed) != len(predicateTypes) {
		t.Fatalf("message lists %d short names, %d are resolved", len(listed), len(predicateTypes))
	}
	for _, name := range listed {
		uri, err := resolvePredicateType(name)
		if err != nil || uri == name || !strings.HasPrefix(uri, "https://") {
			t.Errorf("%s resolves to %q, %v", name, uri, err)
		}
	}
	if uri, err := resolvePredicateType("urn:example:attestation"); err != nil || uri != "urn:example:attestation" {
		t.Errorf("an absolute URN: %q, %v", uri, err)
	}
	if _, err := resolvePredicateType("https://slsa.dev/provenance v1"); err == nil {
		t.Error("a URI with a space resolved")
	}
}
