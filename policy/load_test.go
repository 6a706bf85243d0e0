package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A policy in Connaisseur's shape using every supported field.
const fullPolicy = `
mode: audit
validators:
- name: allow
  type: static
  approve: true
- name: deny
  type: static
  approve: false
- name: default
  type: cosign
  host:
    rekor: rekor.example.com
  auth:
    secretName: regcred
  trustRoots:
  - name: default
    key: KEY_P256
  - name: bob
    key: KEY_ED25519
  - name: carol
    key: KEY_RSA2048
- name: other
  type: cosign
  trustRoots:
  - name: default
    key: KEY_P384
policy:
- pattern: "*:*"
  validator: deny
- pattern: "k8s.gcr.io/*"
  validator: allow
  namespaces: [kube-system]
- pattern: "docker.io/myorg/*"
  with:
    trustRoot: "*"
    threshold: 2
    required: [default]
    verifyInTransparencyLog: false
    verifySCT: false
    mode: mutate
  mode: enforce
- pattern: "ghcr.io/myorg/*"
  validator: other
  with:
    mode: insecureValidateOnly
`

func TestParseFull(t *testing.T) {
	data := []byte(withKeys(t, fullPolicy))
	p, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if p.Version != hex.EncodeToString(sum[:]) {
		t.Errorf("Version = %q, want the hex SHA-256 of the file", p.Version)
	}
	if p.Mode != ModeAudit || len(p.Validators) != 4 || len(p.Rules) != 4 {
		t.Fatalf("parsed %+v", p)
	}
	// The keys' kinds are verify/cosign's to parse (its TestParseFullKeys).
	v := p.Validator("default")
	if v.Host == nil || v.Host.Rekor != "rekor.example.com" || v.Auth == nil || v.Auth.SecretName != "regcred" {
		t.Errorf("host/auth: %+v %+v", v.Host, v.Auth)
	}

	m, err := p.Match("docker.io/myorg/app:v1", "default")
	if err != nil || m.Rule.Pattern != "docker.io/myorg/*" || m.Mode != ModeEnforce || m.Validator.Name != "default" {
		t.Fatalf("Match = %+v, %v", m, err)
	}
	if th, req := m.Rule.With.Need(m.Validator); th != 2 || len(req) != 1 || req[0] != "default" {
		t.Errorf("Need = %d, %q", th, req)
	}
	m, err = p.Match("k8s.gcr.io/pause:3.9", "kube-system")
	if err != nil || m.Validator.Name != "allow" || m.Mode != ModeAudit {
		t.Errorf("Match(pause) = %+v, %v", m, err)
	}

	again, err := Parse(data)
	if err != nil || again.Version != p.Version {
		t.Errorf("same bytes, different Version: %v", err)
	}
	changed, err := Parse(append(data, '\n'))
	if err != nil || changed.Version == p.Version {
		t.Errorf("different bytes, same Version: %v", err)
	}
}

func TestLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(withKeys(t, fullPolicy)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path + ".missing"); err == nil || !strings.Contains(err.Error(), "policy.yaml.missing") {
		t.Errorf("Load(missing) error = %v, want one naming the file", err)
	}
	if err := os.WriteFile(path, []byte("policy: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("Load(invalid) error = %v, want one naming the file", err)
	}
}

// Head of a valid policy for the validation cases; each case appends to it
// or replaces it.
const cosignHead = `
validators:
- name: default
  type: cosign
  trustRoots:
  - name: default
    key: KEY_P256
  - name: bob
    key: KEY_P384
- name: allow
  type: static
  approve: true
`

func TestValidationErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // each must appear in the error
	}{
		{"empty file", ``, []string{"validators: at least one validator", "policy: at least one rule"}},
		{"empty lists", "validators: []\npolicy: []", []string{"validators: at least one validator", "policy: at least one rule"}},
		{"unknown top-level field", cosignHead + "policy: [{pattern: '*'}]\nalertng: {}", []string{`unknown field "alertng"`}},
		{"unknown with field", cosignHead + "policy: [{pattern: '*', with: {trustroot: x}}]", []string{`policy[0].with: unknown field "trustroot" (did you mean "trustRoot"?)`}},
		{"unknown host field", `
validators: [{name: default, type: cosign, host: {rekorURL: x}, trustRoots: [{name: default, key: KEY_P256}]}]
policy: [{pattern: '*'}]`, []string{`validators[0].host: unknown field "rekorURL"`}},
		{"two unknown fields", cosignHead + "policy: [{pattern: '*', validators: x}]\nalertng: {}", []string{`unknown field "alertng"`, `policy[0]: unknown field "validators"`}},
		{"wrong type", cosignHead + "policy: [{pattern: '*', with: {threshold: two}}]", []string{"parse policy", "threshold"}},
		{"duplicate key", cosignHead + "policy: [{pattern: '*', pattern: 'x'}]", []string{"parse policy", "pattern"}},
		{"not yaml", "validators: [", []string{"parse policy"}},
		{"global mode", cosignHead + "mode: block\npolicy: [{pattern: '*'}]", []string{`mode: unknown mode "block"`}},
		{"validator name empty", `
validators: [{type: static, approve: true}]
policy: [{pattern: '*', validator: x}]`, []string{"validators[0].name: must not be empty"}},
		{"validator name duplicate", cosignHead + `
- name: allow
  type: static
  approve: false
policy: [{pattern: '*'}]`, []string{`validators[2].name: duplicate validator name "allow" (also validators[1])`}},
		{"type empty", "validators: [{name: default}]\npolicy: [{pattern: '*'}]", []string{"validators[0].type: must be set"}},
		{"type unknown", "validators: [{name: default, type: sigstore}]\npolicy: [{pattern: '*'}]", []string{`validators[0].type: unknown validator type "sigstore"`}},
		{"static without approve", "validators: [{name: default, type: static}]\npolicy: [{pattern: '*'}]", []string{"validators[0].approve: required"}},
		{"static with roots", "validators: [{name: default, type: static, approve: true, trustRoots: [{name: a, key: KEY_P256}]}]\npolicy: [{pattern: '*'}]",
			[]string{"validators[0].trustRoots: a static validator takes no trust roots"}},
		{"cosign with approve", "validators: [{name: default, type: cosign, approve: true, trustRoots: [{name: default, key: KEY_P256}]}]\npolicy: [{pattern: '*'}]",
			[]string{"validators[0].approve: only static validators"}},
		{"cosign without roots", "validators: [{name: default, type: cosign}]\npolicy: [{pattern: '*', with: {trustRoot: '*'}}]",
			[]string{"validators[0].trustRoots: a cosign validator needs at least one trust root"}},
		{"cosign host string", "validators: [{name: default, type: cosign, host: rekor.example.com, trustRoots: [{name: default, key: KEY_P256}]}]\npolicy: [{pattern: '*'}]",
			[]string{"validators[0].host: a cosign validator takes an object"}},
		{"root name empty", "validators: [{name: default, type: cosign, trustRoots: [{name: default, key: KEY_P256}, {key: KEY_P256}]}]\npolicy: [{pattern: '*'}]",
			[]string{"validators[0].trustRoots[1].name: must not be empty"}},
		{"root name duplicate", "validators: [{name: default, type: cosign, trustRoots: [{name: default, key: KEY_P256}, {name: default, key: KEY_P384}]}]\npolicy: [{pattern: '*'}]",
			[]string{`validators[0].trustRoots[1].name: duplicate trust root name "default" (also trustRoots[0])`}},
		{"key missing", "validators: [{name: default, type: cosign, trustRoots: [{name: default}]}]\npolicy: [{pattern: '*'}]",
			[]string{"validators[0].trustRoots[0].key: required"}},
		{"root with notation cert", "validators: [{name: default, type: cosign, trustRoots: [{name: default, key: KEY_P256, cert: x}]}]\npolicy: [{pattern: '*'}]",
			[]string{"validators[0].trustRoots[0]: cert and tsCert belong to notation"}},
		{"pattern empty", cosignHead + "policy: [{validator: allow}]", []string{`policy[0].pattern: "": must not be empty`}},
		{"pattern glob class", cosignHead + "policy: [{pattern: 'reg.io/[ab*', validator: allow}]", []string{`policy[0].pattern: "reg.io/[ab*": '[' at position 8 is never closed`}},
		{"pattern space", cosignHead + "policy: [{pattern: 'reg.io/a b', validator: allow}]", []string{`policy[0].pattern: "reg.io/a b": character ' ' cannot appear`}},
		{"pattern empty component", cosignHead + "policy: [{pattern: 'reg.io//a', validator: allow}]", []string{"policy[0].pattern", "empty path component"}},
		{"pattern upper case", cosignHead + "policy: [{pattern: 'MyOrg/app', validator: allow}]", []string{"policy[0].pattern", `"MyOrg" is not lower case`}},
		{"pattern two @", cosignHead + "policy: [{pattern: 'a@b@c', validator: allow}]", []string{"policy[0].pattern", "more than one '@'"}},
		{"pattern no name", cosignHead + "policy: [{pattern: ':7', validator: allow}]", []string{"policy[0].pattern", "no repository name"}},
		{"pattern too long", cosignHead + "policy: [{pattern: 'reg.io/" + strings.Repeat("a", 600) + "', validator: allow}]", []string{"policy[0].pattern", "at most 512"}},
		{"validator unknown", cosignHead + `
policy:
- pattern: "*"
- pattern: "a/*"
- pattern: "b/*"
  validator: foo`, []string{`policy[2].validator: no validator named "foo"`}},
		{"no default validator", "validators: [{name: allow, type: static, approve: true}]\npolicy: [{pattern: '*'}]",
			[]string{`policy[0].validator: not set, and there is no validator named "default"`}},
		{"default root missing", "validators: [{name: default, type: cosign, trustRoots: [{name: alice, key: KEY_P256}]}]\npolicy: [{pattern: '*'}]",
			[]string{`policy[0].with.trustRoot: validator "default" has no trust root named "default"`}},
		{"named root missing", cosignHead + "policy: [{pattern: '*', with: {trustRoot: carol}}]",
			[]string{`policy[0].with.trustRoot: validator "default" has no trust root named "carol"`}},
		{"required unknown", cosignHead + "policy: [{pattern: '*', with: {trustRoot: '*', required: [carol]}}]",
			[]string{`policy[0].with.required[0]: validator "default" has no trust root named "carol"`}},
		{"required not selected", cosignHead + "policy: [{pattern: '*', with: {required: [bob]}}]",
			[]string{`policy[0].with.required[0]: trust root "bob" is not selected by trustRoot "default"`}},
		{"required twice", cosignHead + "policy: [{pattern: '*', with: {trustRoot: '*', required: [bob, bob]}}]",
			[]string{`policy[0].with.required[1]: trust root "bob" is listed twice`}},
		{"threshold zero", cosignHead + "policy: [{pattern: '*', with: {trustRoot: '*', threshold: 0}}]",
			[]string{"policy[0].with.threshold: 0 is less than 1"}},
		{"threshold above selected", cosignHead + "policy: [{pattern: '*', with: {trustRoot: '*', threshold: 3}}]",
			[]string{"policy[0].with.threshold: 3 is more than the 2 selected trust root(s)"}},
		{"threshold above one root", cosignHead + "policy: [{pattern: '*', with: {threshold: 2}}]",
			[]string{"policy[0].with.threshold: 2 is more than the 1 selected trust root(s)"}},
		{"threshold below required", cosignHead + "policy: [{pattern: '*', with: {trustRoot: '*', threshold: 1, required: [default, bob]}}]",
			[]string{"policy[0].with.threshold: 1 is less than the 2 required trust roots"}},
		{"delegations on cosign", cosignHead + "policy: [{pattern: '*', with: {delegations: [releases]}}]",
			[]string{"policy[0].with.delegations: delegations are for notaryv1 validators"}},
		{"rule mode", cosignHead + "policy: [{pattern: '*', mode: warn}]", []string{`policy[0].mode: unknown mode "warn"`}},
		{"with mode", cosignHead + "policy: [{pattern: '*', with: {mode: validate}}]", []string{`policy[0].with.mode: unknown mode "validate"`}},
		{"namespaces", cosignHead + "policy: [{pattern: '*', namespaces: [prod, Prod_1, '', " + strings.Repeat("a", 64) + "]}]",
			[]string{`policy[0].namespaces[1]: "Prod_1" is not a valid namespace name`, `policy[0].namespaces[2]: ""`, "policy[0].namespaces[3]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse([]byte(withKeys(t, tt.yaml)))
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", p)
			}
			if p != nil {
				t.Errorf("Parse returned a policy with the error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestValidateInCode(t *testing.T) {
	approve := true
	p := &Policy{
		Validators: []Validator{{Name: "default", Type: TypeStatic, Approve: &approve}},
		Rules:      []Rule{{Pattern: "*"}},
	}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	// The compiled patterns follow a rule changed after they were compiled.
	m := NewMatcher(p)
	p.Rules[0].Pattern = "reg.io/*"
	if _, err := m.Match("redis", ""); !errors.Is(err, ErrNoRule) {
		t.Errorf("Match after changing the pattern: %v, want ErrNoRule", err)
	}
}
