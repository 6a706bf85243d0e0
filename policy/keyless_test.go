package policy

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nri-image-verifier/nri-image-verifier/internal/sigstoretest"
)

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
	return withKeys(t, yaml)
}

const keylessRoot = `{name: ci, keyless: {issuer: "https://token.actions.githubusercontent.com", subjectRegex: "https://github\\.com/org/.*"}}`

func TestKeylessLoads(t *testing.T) {
	for name, yaml := range map[string]string{
		"inline": "validators: [{name: default, type: cosign, host: {fulcioCert: FULCIO, rekorPubkey: REKOR, ctLogPubkey: CTLOG}, trustRoots: [" + keylessRoot + "]}]\npolicy: [{pattern: '*', with: {trustRoot: ci}}]",
		"file":   "validators: [{name: default, type: cosign, trustedRoot: TRUSTED_ROOT, trustRoots: [" + keylessRoot + "]}]\npolicy: [{pattern: '*', with: {trustRoot: ci}}]",
		// Without logs, both checks off: the certificate alone, checked now.
		"fulcio only": "validators: [{name: default, type: cosign, host: {fulcioCert: FULCIO}, trustRoots: [" + keylessRoot + "]}]\npolicy: [{pattern: '*', with: {trustRoot: ci, verifyInTransparencyLog: false, verifySCT: false}}]",
		// Key and keyless roots in one validator.
		"mixed": "validators: [{name: default, type: cosign, host: {fulcioCert: FULCIO, rekorPubkey: REKOR, ctLogPubkey: CTLOG}, trustRoots: [" + keylessRoot + ", {name: key, key: KEY_P256}]}]\npolicy: [{pattern: '*', with: {trustRoot: '*'}}]",
	} {
		t.Run(name, func(t *testing.T) {
			p, err := Parse([]byte(withSigstore(t, yaml)))
			if err != nil {
				t.Fatal(err)
			}
			v := p.Validator(DefaultName)
			if v.Sigstore == nil || !v.Sigstore.HasFulcio {
				t.Fatalf("no Fulcio material parsed: %+v", v.Sigstore)
			}
			if name != "fulcio only" && (!v.Sigstore.HasRekor || !v.Sigstore.HasCTLog) {
				t.Fatalf("log material missing: %+v", v.Sigstore)
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
	k := p.Validators[0].TrustRoots[0].Keyless
	for s, want := range map[string]bool{
		"https://github.com/org/":                       true,
		"https://github.com/org/repo/.github/wf.yml":    false,
		"https://evil.example/?https://github.com/org/": false,
	} {
		if got := k.SubjectRE.MatchString(s); got != want {
			t.Errorf("subjectRegex matches %q = %v, want %v", s, got, want)
		}
	}
	if k.IssuerRE.MatchString("https://issuer.example.evil") || !k.IssuerRE.MatchString("https://issuer.example") {
		t.Errorf("issuerRegex is not anchored: %s", k.IssuerRE)
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
		{"no fulcio", v("host: {rekorPubkey: REKOR, ctLogPubkey: CTLOG}, ", keylessRoot) + rule,
			[]string{"validators[0].trustRoots[0].keyless: no Fulcio CA certificates", "validators[0].host.fulcioCert"}},
		{"fulcio garbage", v("host: {fulcioCert: nope}, ", keylessRoot) + rule,
			[]string{"validators[0].host.fulcioCert: "}},
		{"fulcio leaf", v("host: {fulcioCert: LEAF}, ", keylessRoot) + rule,
			[]string{"validators[0].host.fulcioCert: certificate 1", "is not a CA certificate"}},
		{"rekor garbage", v("host: {fulcioCert: FULCIO, rekorPubkey: nope}, ", keylessRoot) + rule,
			[]string{"validators[0].host.rekorPubkey: not a PEM public key"}},
		{"rekor not ECDSA", v("host: {fulcioCert: FULCIO, rekorPubkey: KEY_ED25519}, ", keylessRoot) + rule,
			[]string{"validators[0].host.rekorPubkey: ", "Rekor signs its entry timestamps with ECDSA"}},
		{"ctlog garbage", v("host: {fulcioCert: FULCIO, ctLogPubkey: nope}, ", keylessRoot) + rule,
			[]string{"validators[0].host.ctLogPubkey: not a PEM public key"}},
		{"trusted root relative", v("trustedRoot: trusted_root.json, ", keylessRoot) + rule,
			[]string{`validators[0].trustedRoot: "trusted_root.json": must be an absolute path`}},
		{"trusted root missing", v("trustedRoot: /nonexistent/trusted_root.json, ", keylessRoot) + rule,
			[]string{"validators[0].trustedRoot: open /nonexistent/trusted_root.json"}},
		{"trusted root garbage", v("trustedRoot: "+bad+", ", keylessRoot) + rule,
			[]string{"validators[0].trustedRoot: " + bad + " is not a Sigstore trusted root"}},
		{"trusted root without keyless", v("trustedRoot: TRUSTED_ROOT, ", "{name: default, key: KEY_P256}") + "policy: [{pattern: '*'}]",
			[]string{"validators[0].trustedRoot: only keyless trust roots use a trusted root"}},
		{"trusted root on static", "validators: [{name: default, type: static, approve: true, trustedRoot: TRUSTED_ROOT}]\npolicy: [{pattern: '*'}]",
			[]string{"validators[0].trustedRoot: only cosign validators"}},
		{"tlog without rekor", v("host: {fulcioCert: FULCIO, ctLogPubkey: CTLOG}, ", keylessRoot) + "policy: [{pattern: '*', with: {trustRoot: ci}}]",
			[]string{`policy[0].with.verifyInTransparencyLog: on (the default) for keyless trust root "ci", but validator "default" has no Rekor public key`}},
		{"sct without ctlog", v("host: {fulcioCert: FULCIO, rekorPubkey: REKOR}, ", keylessRoot) + "policy: [{pattern: '*', with: {trustRoot: ci, verifySCT: true}}]",
			[]string{`policy[0].with.verifySCT: on (the default) for keyless trust root "ci", but validator "default" has no CT log public key`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse([]byte(withSigstore(t, tt.yaml)))
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

// A key-based rule asking for the log loads, with a warning that key roots
// are verified without one.
func TestKeylessSwitchesOnKeyRootWarn(t *testing.T) {
	p := mustParse(t, "validators: [{name: default, type: cosign, trustRoots: [{name: default, key: KEY_P256}]}]\npolicy: [{pattern: '*', with: {verifyInTransparencyLog: true, verifySCT: true}}]")
	ws := strings.Join(p.Warnings(), "\n")
	if !strings.Contains(ws, "policy[0] (*).with: verifyInTransparencyLog/verifySCT apply to keyless trust roots only") {
		t.Fatalf("warnings: %q", ws)
	}
}

func TestKeylessChecksDefault(t *testing.T) {
	f, tr := false, true
	for _, c := range []struct {
		w         With
		tlog, sct bool
	}{
		{With{}, true, true},
		{With{VerifyInTransparencyLog: &f}, false, true},
		{With{VerifySCT: &f, VerifyInTransparencyLog: &tr}, true, false},
	} {
		if tlog, sct := c.w.KeylessChecks(); tlog != c.tlog || sct != c.sct {
			t.Errorf("%+v: KeylessChecks() = %v, %v; want %v, %v", c.w, tlog, sct, c.tlog, c.sct)
		}
	}
}

// A reload whose trusted root is unreadable is a policy error: the watcher
// reports it and the last good policy (and its material) stays in force.
func TestKeylessReloadKeepsLastGood(t *testing.T) {
	good := withSigstore(t, "validators: [{name: default, type: cosign, trustedRoot: TRUSTED_ROOT, trustRoots: ["+keylessRoot+"]}]\npolicy: [{pattern: '*', with: {trustRoot: ci}}]")
	c := newConfigMapDir(t, good)
	loads, errs := startWatch(t, c.path())
	select {
	case p := <-loads:
		if p.Version != version(good) || p.Validators[0].Sigstore == nil {
			t.Fatalf("first load: version %s, material %v", p.Version, p.Validators[0].Sigstore)
		}
	case err := <-errs:
		t.Fatalf("good policy refused: %v", err)
	case <-time.After(waitFor):
		t.Fatal("no load")
	}
	missing := filepath.Join(t.TempDir(), "gone.json")
	c.swap("validators: [{name: default, type: cosign, trustedRoot: " + strconv.Quote(missing) + ", trustRoots: [" + keylessRoot + "]}]\npolicy: [{pattern: '*', with: {trustRoot: ci}}]")
	deadline := time.After(waitFor)
	for {
		select {
		case p := <-loads:
			t.Fatalf("a policy with a missing trusted root was loaded: %s", p.Version)
		case err := <-errs:
			if strings.Contains(err.Error(), "validators[0].trustedRoot: open "+missing) {
				return
			}
		case <-deadline:
			t.Fatal("no error for the missing trusted root")
		}
	}
}
