package notaryv1

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nri-image-verifier/nri-image-verifier/internal/policytest"
	"github.com/nri-image-verifier/nri-image-verifier/policy"
)

// parse reads a test policy (with KEY_* placeholders) and checks it as
// validators.Check does for a policy of notaryv1 validators: its shape and
// the notaryv1 section.
func parse(t testing.TB, yaml string) (*policy.Policy, error) {
	t.Helper()
	return policy.ParseWith([]byte(policytest.WithKeys(t, yaml)), func(p *policy.Policy) error { return p.Validate(Section) })
}

// A Connaisseur notaryv1 validator and rules, as its docs write them.
const notaryPolicy = `
validators:
- name: default
  type: notaryv1
  host: notary.example.com:4443
  cert: CA_CERT
  auth:
    secretName: notary-creds
  trustRoots:
  - name: default
    key: KEY_P256
  - name: rsa
    key: KEY_RSA2048
- name: hub
  type: notaryv1
  trustRoots:
  - name: default
    key: KEY_P256
policy:
- pattern: "notary.example.com/*"
- pattern: "notary.example.com/team/*"
  with:
    trustRoot: "*"
    delegations: [releases, targets/qa, team/sub]
    mode: mutate
- pattern: "docker.io/library/*"
  validator: hub
  with: {trustRoot: default}
`

func TestNotaryV1Loads(t *testing.T) {
	p, err := parse(t, strings.ReplaceAll(notaryPolicy, "CA_CERT", strconv.Quote(testCA(t))))
	if err != nil {
		t.Fatal(err)
	}
	v := p.Validator("default")
	var problems policy.Errors
	compiled := compile(&problems, "", v)
	if err := problems.Err(); err != nil {
		t.Fatal(err)
	}
	for _, r := range v.TrustRoots {
		if compiled.keys[r.Name] == nil {
			t.Errorf("trust root %q: key not parsed", r.Name)
		}
	}
	u, err := serverURL(v)
	if err != nil || u.String() != "https://notary.example.com:4443" {
		t.Errorf("serverURL = %v, %v", u, err)
	}
	if u, err := serverURL(p.Validator("hub")); err != nil || u.String() != DefaultServer {
		t.Errorf("serverURL without host = %v, %v; want Docker Hub's", u, err)
	}
	if got := p.Rules[1].With.Delegations; len(got) != 3 {
		t.Errorf("delegations = %v", got)
	}
}

func TestNotaryServer(t *testing.T) {
	tests := []struct{ host, want, err string }{
		{"", DefaultServer, ""},
		{"notary.docker.io", "https://notary.docker.io", ""},
		{" https://notary.docker.io/ ", "https://notary.docker.io", ""},
		{"http://127.0.0.1:4443", "http://127.0.0.1:4443", ""},
		{"HTTPS://Notary.IO/base/", "https://Notary.IO/base", ""},
		{"ftp://notary.io", "", "scheme must be https or http"},
		{"https://", "", "no host"},
		{"https://user:secret@notary.io", "", "credentials in the URL"},
		{"https://notary.io/?x=1", "", "query or fragment"},
		{"https://notary.io/#x", "", "query or fragment"},
		{"https://notary.io:port", "", "not a URL"},
	}
	for _, tt := range tests {
		v := &policy.Validator{Type: policy.TypeNotaryV1}
		if tt.host != "" {
			v.Host = &policy.Host{Server: tt.host}
		}
		u, err := serverURL(v)
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("serverURL(%q) = %v, %v; want error %q", tt.host, u, err, tt.err)
		case tt.err == "" && (err != nil || u.String() != tt.want):
			t.Errorf("serverURL(%q) = %v, %v; want %s", tt.host, u, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("error shows the password: %v", err)
		}
	}
}

func TestNotaryDelegationRole(t *testing.T) {
	for in, want := range map[string]string{"releases": "targets/releases", "targets/releases": "targets/releases", "team/a": "targets/team/a"} {
		if got := delegationRole(in); got != want {
			t.Errorf("delegationRole(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNotaryV1Errors(t *testing.T) {
	const head = `
validators:
- name: default
  type: notaryv1
  host: https://notary.io
  trustRoots:
  - name: default
    key: KEY_P256
  - name: bob
    key: KEY_RSA2048
`
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"host object", "validators: [{name: default, type: notaryv1, host: {rekor: r.io}, trustRoots: [{name: default, key: KEY_P256}]}]\npolicy: [{pattern: '*'}]",
			[]string{"validators[0].host: a notaryv1 validator takes the notary server URL as a string"}},
		{"host scheme", "validators: [{name: default, type: notaryv1, host: 'ftp://n.io', trustRoots: [{name: default, key: KEY_P256}]}]\npolicy: [{pattern: '*'}]",
			[]string{"validators[0].host:", "scheme must be https or http"}},
		{"cert garbage", "validators: [{name: default, type: notaryv1, cert: nope, trustRoots: [{name: default, key: KEY_P256}]}]\npolicy: [{pattern: '*'}]",
			[]string{"validators[0].cert: not PEM certificates"}},
		{"no roots", "validators: [{name: default, type: notaryv1}]\npolicy: [{pattern: '*'}]",
			[]string{"validators[0].trustRoots: a notaryv1 validator needs at least one trust root"}},
		{"ed25519 root", "validators: [{name: default, type: notaryv1, trustRoots: [{name: default, key: KEY_ED25519}]}]\npolicy: [{pattern: '*'}]",
			[]string{"validators[0].trustRoots[0].key: an Ed25519 key cannot be a notary root key"}},
		{"keyless root", "validators: [{name: default, type: notaryv1, trustRoots: [{name: default, keyless: {issuer: i, subject: s}}]}]\npolicy: [{pattern: '*'}]",
			[]string{"validators[0].trustRoots[0].keyless: a notaryv1 trust root is the repository's root public key"}},
		{"notation cert root", "validators: [{name: default, type: notaryv1, trustRoots: [{name: default, key: KEY_P256, cert: x}]}]\npolicy: [{pattern: '*'}]",
			[]string{"validators[0].trustRoots[0]: cert and tsCert belong to notation trust roots; a notaryv1 trust root takes key"}},
		{"duplicate root", "validators: [{name: default, type: notaryv1, trustRoots: [{name: default, key: KEY_P256}, {name: default, key: KEY_P384}]}]\npolicy: [{pattern: '*'}]",
			[]string{`validators[0].trustRoots[1].name: duplicate trust root name "default"`}},
		{"approve", "validators: [{name: default, type: notaryv1, approve: true, trustRoots: [{name: default, key: KEY_P256}]}]\npolicy: [{pattern: '*'}]",
			[]string{"validators[0].approve: only static validators take approve"}},
		{"root missing", head + "policy: [{pattern: '*', with: {trustRoot: carol}}]",
			[]string{`policy[0].with.trustRoot: validator "default" has no trust root named "carol"`}},
		{"threshold", head + "policy: [{pattern: '*', with: {trustRoot: '*', threshold: 1}}]",
			[]string{"policy[0].with.threshold: threshold is for cosign validators"}},
		{"required", head + "policy: [{pattern: '*', with: {trustRoot: '*', required: [bob]}}]",
			[]string{"policy[0].with.required: required is for cosign validators"}},
		{"transparency log", head + "policy: [{pattern: '*', with: {verifySCT: false}}]",
			[]string{"policy[0].with: verifyInTransparencyLog and verifySCT are for cosign validators"}},
		{"delegation names", head + "policy: [{pattern: '*', with: {delegations: [Releases, '', 'a//b', '../x', 'targets/', 'a b']}}]",
			[]string{`policy[0].with.delegations[0]: "Releases" is not a notary delegation name`,
				"policy[0].with.delegations[1]: must not be empty",
				`policy[0].with.delegations[2]: "a//b" is not`,
				`policy[0].with.delegations[3]: "../x" is not`,
				"policy[0].with.delegations[4]: must not be empty",
				`policy[0].with.delegations[5]: "a b" is not`}},
		{"delegation twice", head + "policy: [{pattern: '*', with: {delegations: [releases, targets/releases]}}]",
			[]string{`policy[0].with.delegations[1]: delegation "targets/releases" is listed twice (also delegations[0])`}},
		{"delegation too long", head + "policy: [{pattern: '*', with: {delegations: ['" + strings.Repeat("a", 250) + "']}}]",
			[]string{"policy[0].with.delegations[0]", "is not a notary delegation name"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := parse(t, tt.yaml)
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

// testCA returns a self-signed CA certificate in PEM.
func testCA(t *testing.T) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}
