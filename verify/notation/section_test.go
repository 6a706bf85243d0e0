package notation

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nri-image-verifier/nri-image-verifier/internal/policytest"
	"github.com/nri-image-verifier/nri-image-verifier/policy"
)

// Certificates for notation policies, made once per test binary.
var (
	certsOnce sync.Once
	certPEMs  map[string]string
)

func testCerts(t testing.TB) map[string]string {
	t.Helper()
	certsOnce.Do(func() {
		certPEMs = map[string]string{}
		caKey := genKey()
		ca := mkCert(&x509.Certificate{
			Subject:  pkix.Name{Country: []string{"US"}, Province: []string{"WA"}, Organization: []string{"Example"}, CommonName: "Root"},
			KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
		}, nil, caKey, caKey)
		certPEMs["CA"] = toPEM(ca)
		certPEMs["CA2"] = toPEM(mkCert(&x509.Certificate{
			Subject:  pkix.Name{CommonName: "Root 2"},
			KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
		}, nil, caKey, caKey))
		leafTmpl := &x509.Certificate{
			Subject:     pkix.Name{Country: []string{"US"}, Province: []string{"WA"}, Organization: []string{"Example"}, CommonName: "release"},
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		}
		// Issued by the CA: neither a CA nor self-signed.
		certPEMs["LEAF"] = toPEM(mkCert(leafTmpl, ca, genKey(), caKey))
		// Self-signed signing certificate: a valid notation root.
		selfKey := genKey()
		certPEMs["SELF"] = toPEM(mkCert(leafTmpl, nil, selfKey, selfKey))
	})
	return certPEMs
}

func genKey() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

func mkCert(tmpl, parent *x509.Certificate, key *ecdsa.PrivateKey, signer crypto.Signer) *x509.Certificate {
	tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		panic(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	return c
}

func toPEM(c *x509.Certificate) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
}

// withCerts replaces CERT_<NAME> placeholders with the quoted PEM of that
// test certificate (CERT_CA+CA2: both, one bundle), then KEY_ ones.
func withCerts(t testing.TB, yaml string) string {
	t.Helper()
	c := testCerts(t)
	yaml = strings.ReplaceAll(yaml, "CERT_CA+CA2", strconv.Quote(c["CA"]+c["CA2"]))
	for _, name := range []string{"CA2", "CA", "LEAF", "SELF"} {
		yaml = strings.ReplaceAll(yaml, "CERT_"+name, strconv.Quote(c[name]))
	}
	return policytest.WithKeys(t, yaml)
}

// parse reads a test policy and checks it as validators.Check does for a
// policy of notation validators: its shape and the notation section.
func parse(yaml string) (*policy.Policy, error) {
	return policy.ParseWith([]byte(yaml), func(p *policy.Policy) error { return p.Validate(Section) })
}

func mustParse(t testing.TB, yaml string) *policy.Policy {
	t.Helper()
	p, err := parse(yaml)
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, yaml)
	}
	return p
}

const notationHead = `
validators:
- name: default
  type: notation
  trustRoots:
  - {name: default, cert: CERT_CA}
  - {name: bob, cert: CERT_SELF}
`

const pin = `'x509.subject: C=US, ST=WA, O=Example, CN=release'`

func TestNotationValid(t *testing.T) {
	p := mustParse(t, withCerts(t, `
validators:
- name: default
  type: notation
  auth: {secretName: regcred}
  trustRoots:
  - {name: default, cert: CERT_CA+CA2, tsCert: CERT_CA}
  - {name: self, cert: CERT_SELF}
policy:
- pattern: "reg.io/app/*"
  with:
    verificationLevel: permissive
    verifyTimestamp: afterCertExpiry
    trustedIdentities: [`+pin+`, 'x509.subject: C=DE, ST=BE, O=Other']
- pattern: "reg.io/any/*"
  with: {trustRoot: '*', threshold: 1, required: [self], trustedIdentities: ['*']}
- pattern: "*"
  with: {verificationLevel: audit, trustedIdentities: ['x509.subject: C=US,ST=WA,O=Example']}
`))
	certs, ts, _, err := rootCerts(p.Validators[0].TrustRoots[0])
	if err != nil || len(certs) != 2 || len(ts) != 1 {
		t.Fatalf("rootCerts = %d certs, %d TSA certs, %v; want 2, 1, nil", len(certs), len(ts), err)
	}
	if got := levelOf(p.Rules[0].With); got != LevelPermissive {
		t.Errorf("level %q, want permissive", got)
	}
	if got := levelOf(p.Rules[1].With); got != LevelStrict {
		t.Errorf("default level %q, want strict", got)
	}
	if got := verifyTimestampOf(p.Rules[1].With); got != "always" {
		t.Errorf("default verifyTimestamp %q, want always", got)
	}
}

func TestNotationInvalid(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"no roots", "validators: [{name: default, type: notation}]\npolicy: [{pattern: '*', with: {trustedIdentities: ['*']}}]",
			[]string{"validators[0].trustRoots: a notation validator needs at least one trust root"}},
		{"cert missing", "validators: [{name: default, type: notation, trustRoots: [{name: default}]}]\npolicy: [{pattern: '*', with: {trustedIdentities: ['*']}}]",
			[]string{"validators[0].trustRoots[0].cert: required"}},
		{"cert garbage", "validators: [{name: default, type: notation, trustRoots: [{name: default, cert: x}]}]\npolicy: [{pattern: '*', with: {trustedIdentities: ['*']}}]",
			[]string{"validators[0].trustRoots[0].cert: holds data that is not a PEM certificate"}},
		{"cert is a key", "validators: [{name: default, type: notation, trustRoots: [{name: default, cert: KEY_P256}]}]\npolicy: [{pattern: '*', with: {trustedIdentities: ['*']}}]",
			[]string{`validators[0].trustRoots[0].cert: PEM block 1 is a "PUBLIC KEY", want CERTIFICATE`}},
		{"cert is a leaf", "validators: [{name: default, type: notation, trustRoots: [{name: default, cert: CERT_LEAF}]}]\npolicy: [{pattern: '*', with: {trustedIdentities: ['*']}}]",
			[]string{`validators[0].trustRoots[0].cert: certificate with subject "CN=release,O=Example,ST=WA,C=US" is not a CA certificate or self-signed signing certificate`}},
		{"tsCert not a root", "validators: [{name: default, type: notation, trustRoots: [{name: default, cert: CERT_CA, tsCert: CERT_LEAF}]}]\npolicy: [{pattern: '*', with: {trustedIdentities: ['*']}}]",
			[]string{`validators[0].trustRoots[0].tsCert: certificate with subject "CN=release,O=Example,ST=WA,C=US" is not a self-signed root certificate`}},
		{"key", "validators: [{name: default, type: notation, trustRoots: [{name: default, key: KEY_P256, cert: CERT_CA}]}]\npolicy: [{pattern: '*', with: {trustedIdentities: ['*']}}]",
			[]string{"validators[0].trustRoots[0].key: a notation trust root is X.509 certificates (cert), not a public key"}},
		{"keyless", "validators: [{name: default, type: notation, trustRoots: [{name: default, cert: CERT_CA, keyless: {issuer: https://x}}]}]\npolicy: [{pattern: '*', with: {trustedIdentities: ['*']}}]",
			[]string{"validators[0].trustRoots[0].keyless: a notation trust root is X.509 certificates (cert), not a keyless identity"}},
		{"root names", "validators: [{name: default, type: notation, trustRoots: [{name: default, cert: CERT_CA}, {name: default, cert: CERT_CA}, {cert: CERT_CA}]}]\npolicy: [{pattern: '*', with: {trustedIdentities: ['*']}}]",
			[]string{`validators[0].trustRoots[1].name: duplicate trust root name "default" (also trustRoots[0])`, "validators[0].trustRoots[2].name: must not be empty"}},
		{"approve and host", "validators: [{name: default, type: notation, approve: true, host: notary.example.com, trustRoots: [{name: default, cert: CERT_CA}]}]\npolicy: [{pattern: '*', with: {trustedIdentities: ['*']}}]",
			[]string{"validators[0].approve: only static validators take approve", "validators[0].host: a notation validator takes no host"}},
		{"registry cert", "validators: [{name: default, type: notation, cert: nope, trustRoots: [{name: default, cert: CERT_CA}]}]\npolicy: [{pattern: '*', with: {trustedIdentities: ['*']}}]",
			[]string{"validators[0].cert: not PEM certificates"}},
		{"level skip", notationHead + "policy: [{pattern: '*', with: {verificationLevel: skip, trustedIdentities: ['*']}}]",
			[]string{`policy[0].with.verificationLevel: "skip" is refused at the node`, "static validator"}},
		{"level unknown", notationHead + "policy: [{pattern: '*', with: {verificationLevel: Strict, trustedIdentities: ['*']}}]",
			[]string{`policy[0].with.verificationLevel: unknown level "Strict" (want "strict", "permissive" or "audit")`}},
		{"verifyTimestamp", notationHead + "policy: [{pattern: '*', with: {verifyTimestamp: never, trustedIdentities: ['*']}}]",
			[]string{`policy[0].with.verifyTimestamp: unknown value "never" (want "always" or "afterCertExpiry")`}},
		{"identity wildcard and more", notationHead + "policy: [{pattern: '*', with: {trustedIdentities: [" + pin + ", '*']}}]",
			[]string{`policy[0].with.trustedIdentities[1]: "*" accepts any identity and cannot be combined with others`}},
		{"identity empty", notationHead + "policy: [{pattern: '*', with: {trustedIdentities: ['']}}]",
			[]string{"policy[0].with.trustedIdentities[0]: must not be empty"}},
		{"identity kind", notationHead + "policy: [{pattern: '*', with: {trustedIdentities: ['x509.san: release@example.com', 'CN=release']}}]",
			[]string{`policy[0].with.trustedIdentities[0]: "x509.san: release@example.com": want "x509.subject: "`, "plugin",
				`policy[0].with.trustedIdentities[1]: "CN=release": want "x509.subject: "`}},
		{"identity without C ST O", notationHead + "policy: [{pattern: '*', with: {trustedIdentities: ['x509.subject: CN=release']}}]",
			[]string{`policy[0].with.trustedIdentities[0]: distinguished name (DN) " CN=release" has no mandatory RDN attribute for "C"`}},
		{"identity not a DN", notationHead + "policy: [{pattern: '*', with: {trustedIdentities: ['x509.subject: C=US, ST=WA, O=Example, nonsense']}}]",
			[]string{`policy[0].with.trustedIdentities[0]: parsing distinguished name (DN)`}},
		{"identity duplicate attribute", notationHead + "policy: [{pattern: '*', with: {trustedIdentities: ['x509.subject: C=US, ST=WA, O=A, O=B']}}]",
			[]string{`has duplicate RDN attribute for "O"`}},
		{"identity value empty", notationHead + "policy: [{pattern: '*', with: {trustedIdentities: ['x509.subject:']}}]",
			[]string{`policy[0].with.trustedIdentities[0]: trusted identity "x509.subject:" without an identity value`}},
		{"identities overlap", notationHead + "policy: [{pattern: '*', with: {trustedIdentities: [" + pin + ", 'x509.subject: C=US, ST=WA, O=Example']}}]",
			[]string{`policy[0].with.trustedIdentities: overlapping x509 trustedIdentities`}},
		{"root unknown", notationHead + "policy: [{pattern: '*', with: {trustRoot: carol, trustedIdentities: ['*']}}]",
			[]string{`policy[0].with.trustRoot: validator "default" has no trust root named "carol"`}},
		{"threshold", notationHead + "policy: [{pattern: '*', with: {trustRoot: '*', threshold: 3, required: [carol], trustedIdentities: ['*']}}]",
			[]string{"policy[0].with.threshold: 3 is more than the 2 selected trust root(s)", `policy[0].with.required[0]: validator "default" has no trust root named "carol"`}},
		{"cosign options", notationHead + "policy: [{pattern: '*', with: {verifySCT: true, delegations: [releases], trustedIdentities: ['*']}}]",
			[]string{"policy[0].with: verifyInTransparencyLog and verifySCT are for cosign validators", "policy[0].with.delegations: delegations are for notaryv1 validators"}},
		{"notation options on cosign", "validators: [{name: default, type: cosign, trustRoots: [{name: default, key: KEY_P256}]}]\npolicy: [{pattern: '*', with: {verificationLevel: strict, verifyTimestamp: always, trustedIdentities: ['*']}}]",
			[]string{"policy[0].with.verificationLevel: only notation validators", "policy[0].with.verifyTimestamp: only notation validators", "policy[0].with.trustedIdentities: only notation validators"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := parse(withCerts(t, tt.yaml))
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
