package cosign

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/nri-image-verifier/nri-image-verifier/internal/policytest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/sigstoretest"
	"github.com/nri-image-verifier/nri-image-verifier/policy"
)

// checkPolicy checks p as validators.Check does for a policy of cosign
// validators: its shape and the cosign section.
func checkPolicy(p *policy.Policy) error { return p.Validate(Section) }

// parse reads a test policy (with KEY_* placeholders) and checks it.
func parse(t testing.TB, yaml string) (*policy.Policy, error) {
	t.Helper()
	return policy.ParseWith([]byte(policytest.WithKeys(t, yaml)), checkPolicy)
}

func mustParse(t testing.TB, yaml string) *policy.Policy {
	t.Helper()
	p, err := parse(t, yaml)
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, yaml)
	}
	return p
}

// compiled is v's cosign section compiled, with no problem.
func compiled(t testing.TB, v *policy.Validator) *settings {
	t.Helper()
	var problems policy.Errors
	s := compile(&problems, "", v)
	if err := problems.Err(); err != nil {
		t.Fatal(err)
	}
	return s
}

// Head of a valid policy for the validation cases (policy's tests have
// the same).
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

// The cosign validator of policy's full example: each key parses to its
// kind.
func TestParseFullKeys(t *testing.T) {
	p := mustParse(t, `
validators:
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
policy:
- pattern: "docker.io/myorg/*"
  with:
    trustRoot: "*"
    threshold: 2
    required: [default]
    verifyInTransparencyLog: false
    verifySCT: false
    mode: mutate
`)
	s := compiled(t, p.Validator("default"))
	if _, ok := s.keys["default"].(*ecdsa.PublicKey); !ok {
		t.Errorf("default key: %T", s.keys["default"])
	}
	if _, ok := s.keys["bob"].(ed25519.PublicKey); !ok {
		t.Errorf("bob key: %T", s.keys["bob"])
	}
	if _, ok := s.keys["carol"].(*rsa.PublicKey); !ok {
		t.Errorf("carol key: %T", s.keys["carol"])
	}
}

// withSigstore replaces FULCIO, REKOR, CTLOG, LEAF and TRUSTED_ROOT in a
// YAML text with the quoted material of a fresh local Sigstore, and
// KEY_* with test keys.
func withSigstore(t testing.TB, yaml string) string {
	t.Helper()
	ss := sigstoretest.New(t)
	leaf := ss.Issue(t, sigstoretest.Identity{Issuer: "https://i", Subject: "a@b.c"}, sigstoretest.CertOptions{NoSCT: true})
	for ph, v := range map[string]string{
		"FULCIO":       ss.ChainPEM(t),
		"REKOR":        ss.RekorPublicKeyPEM(t),
		"CTLOG":        ss.CTLogPublicKeyPEM(t),
		"LEAF":         leaf.CertPEM(t),
		"TRUSTED_ROOT": ss.WriteTrustedRoot(t),
	} {
		yaml = strings.ReplaceAll(yaml, ph, strconv.Quote(v))
	}
	return policytest.WithKeys(t, yaml)
}

const keylessRootYAML = `{name: ci, keyless: {issuer: "https://token.actions.githubusercontent.com", subjectRegex: "^https://github\\.com/org/.*$"}}` // anchored: read alike by Connaisseur, no warning

func TestKeylessLoads(t *testing.T) {
	for name, yaml := range map[string]string{
		"inline": "validators: [{name: default, type: cosign, host: {fulcioCert: FULCIO, rekorPubkey: REKOR, ctLogPubkey: CTLOG}, trustRoots: [" + keylessRootYAML + "]}]\npolicy: [{pattern: '*', with: {trustRoot: ci}}]",
		"file":   "validators: [{name: default, type: cosign, trustedRoot: TRUSTED_ROOT, trustRoots: [" + keylessRootYAML + "]}]\npolicy: [{pattern: '*', with: {trustRoot: ci}}]",
		// Without logs, both checks off: the certificate alone, checked now.
		"fulcio only": "validators: [{name: default, type: cosign, host: {fulcioCert: FULCIO}, trustRoots: [" + keylessRootYAML + "]}]\npolicy: [{pattern: '*', with: {trustRoot: ci, verifyInTransparencyLog: false, verifySCT: false}}]",
		// Key and keyless roots in one validator.
		"mixed": "validators: [{name: default, type: cosign, host: {fulcioCert: FULCIO, rekorPubkey: REKOR, ctLogPubkey: CTLOG}, trustRoots: [" + keylessRootYAML + ", {name: key, key: KEY_P256}]}]\npolicy: [{pattern: '*', with: {trustRoot: '*'}}]",
	} {
		t.Run(name, func(t *testing.T) {
			p, err := parse(t, withSigstore(t, yaml))
			if err != nil {
				t.Fatal(err)
			}
			m := compiled(t, p.Validator(policy.DefaultName)).material
			if m == nil || !m.HasFulcio {
				t.Fatalf("no Fulcio material parsed: %+v", m)
			}
			if name != "fulcio only" && (!m.HasRekor || !m.HasCTLog) {
				t.Fatalf("log material missing: %+v", m)
			}
			if ws := p.Warnings(); len(ws) != 0 {
				t.Errorf("warnings for a keyless validator's host: %q", ws)
			}
		})
	}
}

// Identity regexes are anchored: a prefix or a substring is no match.
func TestKeylessRegexAnchored(t *testing.T) {
	p := mustParse(t, withSigstore(t, "validators: [{name: default, type: cosign, host: {fulcioCert: FULCIO, rekorPubkey: REKOR, ctLogPubkey: CTLOG}, trustRoots: [{name: default, keyless: {issuerRegex: 'https://issuer\\.example', subjectRegex: 'https://github\\.com/org/'}}]}]\npolicy: [{pattern: '*'}]"))
	k := compiled(t, &p.Validators[0]).identities["default"]
	for s, want := range map[string]bool{
		"https://github.com/org/":                       true,
		"https://github.com/org/repo/.github/wf.yml":    false,
		"https://evil.example/?https://github.com/org/": false,
	} {
		if got := k.subjectRE.MatchString(s); got != want {
			t.Errorf("subjectRegex matches %q = %v, want %v", s, got, want)
		}
	}
	if k.issuerRE.MatchString("https://issuer.example.evil") || !k.issuerRE.MatchString("https://issuer.example") {
		t.Errorf("issuerRegex is not anchored: %s", k.issuerRE)
	}
}

func TestKeylessValidationErrors(t *testing.T) {
	const host = "host: {fulcioCert: FULCIO, rekorPubkey: REKOR, ctLogPubkey: CTLOG}, "
	v := func(extra, roots string) string {
		return "validators: [{name: default, type: cosign, " + extra + "trustRoots: [" + roots + "]}]\n"
	}
	rule := "policy: [{pattern: '*', with: {trustRoot: '*'}}]"
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"mediaType": "nope"`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"no issuer", v(host, "{name: ci, keyless: {subject: a@b.c}}") + rule,
			[]string{"validators[0].trustRoots[0].keyless.issuer: required: issuer or issuerRegex"}},
		{"no subject", v(host, "{name: ci, keyless: {issuer: https://i}}") + rule,
			[]string{"validators[0].trustRoots[0].keyless.subject: required: subject or subjectRegex"}},
		{"issuer twice", v(host, "{name: ci, keyless: {issuer: https://i, issuerRegex: 'https://.*', subject: a@b.c}}") + rule,
			[]string{"validators[0].trustRoots[0].keyless: issuer and issuerRegex are exclusive"}},
		{"bad regex", v(host, "{name: ci, keyless: {issuer: https://i, subjectRegex: '(a'}}") + rule,
			[]string{"validators[0].trustRoots[0].keyless.subjectRegex: not a valid regular expression"}},
		{"key and keyless", v(host, "{name: ci, key: KEY_P256, keyless: {issuer: https://i, subject: a@b.c}}") + rule,
			[]string{"validators[0].trustRoots[0]: give key or keyless, not both"}},
		{"no fulcio", v("host: {rekorPubkey: REKOR, ctLogPubkey: CTLOG}, ", keylessRootYAML) + rule,
			[]string{"validators[0].trustRoots[0].keyless: no Fulcio CA certificates", "validators[0].host.fulcioCert"}},
		{"fulcio garbage", v("host: {fulcioCert: nope}, ", keylessRootYAML) + rule,
			[]string{"validators[0].host.fulcioCert: "}},
		{"fulcio leaf", v("host: {fulcioCert: LEAF}, ", keylessRootYAML) + rule,
			[]string{"validators[0].host.fulcioCert: certificate 1", "is not a CA certificate"}},
		{"rekor garbage", v("host: {fulcioCert: FULCIO, rekorPubkey: nope}, ", keylessRootYAML) + rule,
			[]string{"validators[0].host.rekorPubkey: not a PEM public key"}},
		{"rekor not ECDSA", v("host: {fulcioCert: FULCIO, rekorPubkey: KEY_ED25519}, ", keylessRootYAML) + rule,
			[]string{"validators[0].host.rekorPubkey: ", "Rekor signs its entry timestamps with ECDSA"}},
		{"ctlog garbage", v("host: {fulcioCert: FULCIO, ctLogPubkey: nope}, ", keylessRootYAML) + rule,
			[]string{"validators[0].host.ctLogPubkey: not a PEM public key"}},
		{"trusted root relative", v("trustedRoot: trusted_root.json, ", keylessRootYAML) + rule,
			[]string{`validators[0].trustedRoot: "trusted_root.json": must be an absolute path`}},
		{"trusted root missing", v("trustedRoot: /nonexistent/trusted_root.json, ", keylessRootYAML) + rule,
			[]string{"validators[0].trustedRoot: open /nonexistent/trusted_root.json"}},
		{"trusted root garbage", v("trustedRoot: "+bad+", ", keylessRootYAML) + rule,
			[]string{"validators[0].trustedRoot: " + bad + " is not a Sigstore trusted root"}},
		{"trusted root without keyless", v("trustedRoot: TRUSTED_ROOT, ", "{name: default, key: KEY_P256}") + "policy: [{pattern: '*'}]",
			[]string{"validators[0].trustedRoot: only keyless trust roots use a trusted root"}},
		{"trusted root on static", "validators: [{name: default, type: static, approve: true, trustedRoot: TRUSTED_ROOT}]\npolicy: [{pattern: '*'}]",
			[]string{"validators[0].trustedRoot: only cosign validators"}},
		{"tlog without rekor", v("host: {fulcioCert: FULCIO, ctLogPubkey: CTLOG}, ", keylessRootYAML) + "policy: [{pattern: '*', with: {trustRoot: ci}}]",
			[]string{`policy[0].with.verifyInTransparencyLog: on (the default) for keyless trust root "ci", but validator "default" has no Rekor public key`}},
		{"sct without ctlog", v("host: {fulcioCert: FULCIO, rekorPubkey: REKOR}, ", keylessRootYAML) + "policy: [{pattern: '*', with: {trustRoot: ci, verifySCT: true}}]",
			[]string{`policy[0].with.verifySCT: on (the default) for keyless trust root "ci", but validator "default" has no CT log public key`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := parse(t, withSigstore(t, tt.yaml))
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", p)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestKeylessChecksDefault(t *testing.T) {
	f, tr := false, true
	for _, c := range []struct {
		w         policy.With
		tlog, sct bool
	}{
		{policy.With{}, true, true},
		{policy.With{VerifyInTransparencyLog: &f}, false, true},
		{policy.With{VerifySCT: &f, VerifyInTransparencyLog: &tr}, true, false},
	} {
		if tlog, sct := keylessChecks(c.w); tlog != c.tlog || sct != c.sct {
			t.Errorf("%+v: KeylessChecks() = %v, %v; want %v, %v", c.w, tlog, sct, c.tlog, c.sct)
		}
	}
}
