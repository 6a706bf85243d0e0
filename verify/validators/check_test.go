package validators

import (
	"errors"
	"strings"
	"testing"

	"github.com/nri-image-verifier/nri-image-verifier/internal/policytest"
	"github.com/nri-image-verifier/nri-image-verifier/policy"
)

// parse reads a test policy, with KEY_* placeholders, as the daemon does.
func parse(t testing.TB, yaml string) (*policy.Policy, error) {
	t.Helper()
	return policy.ParseWith([]byte(policytest.WithKeys(t, yaml)), Check)
}

// The cases of policy's validation table whose checks belong to a
// validator type's section: Check reports them with their field paths.
func TestCheckErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // each must appear in the error
	}{
		{"cosign cert", "validators: [{name: default, type: cosign, cert: nope, trustRoots: [{name: default, key: KEY_P256}]}]\npolicy: [{pattern: '*'}]",
			[]string{"validators[0].cert: not PEM certificates"}},
		{"keyless", "validators: [{name: default, type: cosign, trustRoots: [{name: default, keyless: {issuer: https://accounts.google.com, subject: a@b.c}}]}]\npolicy: [{pattern: '*'}]",
			[]string{"validators[0].trustRoots[0].keyless: no Fulcio CA certificates to verify the signing certificate with"}},
		{"key KMS", "validators: [{name: default, type: cosign, trustRoots: [{name: default, key: 'awskms:///arn:aws:kms:us-east-1:1:key/abc'}]}]\npolicy: [{pattern: '*'}]",
			[]string{`validators[0].trustRoots[0].key: "awskms:///arn:aws:kms:us-east-1:1:key/abc" is not an inline PEM public key`, "KMS references are not supported"}},
		{"key garbage", "validators: [{name: default, type: cosign, trustRoots: [{name: default, key: hello}]}]\npolicy: [{pattern: '*'}]",
			[]string{"validators[0].trustRoots[0].key: value is not an inline PEM public key"}},
		{"key RSA 1024", "validators: [{name: default, type: cosign, trustRoots: [{name: default, key: KEY_P256}, {name: weak, key: KEY_RSA1024}]}]\npolicy: [{pattern: '*'}]",
			[]string{"validators[0].trustRoots[1].key: RSA key of 1024 bits, need >= 2048"}},
		{"key P-521", "validators: [{name: default, type: cosign, trustRoots: [{name: default, key: KEY_P521}]}]\npolicy: [{pattern: '*'}]",
			[]string{"validators[0].trustRoots[0].key: ECDSA key on curve P-521, need P-256 or P-384"}},
		// Not from policy's table: each type's section is part of Check.
		{"notaryv1 section", "validators: [{name: default, type: notaryv1, host: 'ftp://n.io', trustRoots: [{name: default, key: KEY_ED25519}]}]\npolicy: [{pattern: '*', with: {delegations: ['a b']}}]",
			[]string{"validators[0].host: \"ftp://n.io\": scheme must be https or http", "validators[0].trustRoots[0].key: an Ed25519 key cannot be a notary root key", `policy[0].with.delegations[0]: "a b" is not a notary delegation name`}},
		{"cosign section", "validators: [{name: default, type: cosign, trustRoots: [{name: default, keyless: {issuer: i, subjectRegex: '(a'}}]}]\npolicy: [{pattern: '*', with: {attestations: [{predicateType: nope}]}}]",
			[]string{"validators[0].trustRoots[0].keyless.subjectRegex: not a valid regular expression", `policy[0].with.attestations[0].predicateType: "nope" is neither an absolute URI`}},
		{"notation", `
validators:
- name: default
  type: notation
  trustRoots: [{name: default, cert: x, tsCert: y}]
policy: [{pattern: '*', with: {trustedIdentities: ['CN=x']}}]`, []string{`validators[0].trustRoots[0].cert: holds data that is not a PEM certificate`, `policy[0].with.trustedIdentities[0]: "CN=x": want "x509.subject: "`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := parse(t, tt.yaml)
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

// Every problem is reported, each as a FieldError, in the order of the file:
// the shape's and the sections' interleaved.
func TestValidationCollectsAll(t *testing.T) {
	_, err := parse(t, `
mode: loud
validators:
- name: default
  type: notation
  trustRoots: [{name: default, cert: x}]
- name: c
  type: cosign
  trustRoots: [{name: default, key: KEY_RSA1024}]
policy:
- pattern: "*"
  with: {trustedIdentities: ['CN=x']}
- pattern: "x/*"
  validator: nope
`)
	var fields []*policy.FieldError
	for _, e := range flatten(err) {
		var fe *policy.FieldError
		if errors.As(e, &fe) {
			fields = append(fields, fe)
		}
	}
	var paths []string
	for _, fe := range fields {
		paths = append(paths, fe.Path)
	}
	want := []string{"mode", "validators[0].trustRoots[0].cert", "validators[1].trustRoots[0].key", "policy[0].with.trustedIdentities[0]", "policy[1].validator"}
	if strings.Join(paths, " ") != strings.Join(want, " ") {
		t.Errorf("paths = %q, want %q\n%v", paths, want, err)
	}
}

// flatten unwraps single and joined errors into the leaves.
func flatten(err error) []error {
	switch e := err.(type) {
	case nil:
		return nil
	case interface{ Unwrap() []error }:
		var out []error
		for _, x := range e.Unwrap() {
			out = append(out, flatten(x)...)
		}
		return out
	case interface{ Unwrap() error }:
		if inner := e.Unwrap(); inner != nil {
			return flatten(inner)
		}
	}
	return []error{err}
}
