package policy

import (
	"fmt"
	"strings"
	"testing"
)

func TestWarnings(t *testing.T) {
	base := "validators:\n- name: allow\n  type: static\n  approve: true\n" +
		"  auth: {secretName: regcred}\npolicy:\n- pattern: \"*:*\"\n  validator: allow\n"
	p, err := Parse([]byte(base))
	if err != nil {
		t.Fatal(err)
	}
	ws := p.Warnings()
	if len(ws) != 1 || !strings.Contains(ws[0], "validators[0] (allow).auth.secretName") {
		t.Fatalf("warnings = %q", ws)
	}
	clean, err := Parse([]byte("validators:\n- name: allow\n  type: static\n  approve: true\npolicy:\n- pattern: \"*:*\"\n  validator: allow\n"))
	if err != nil {
		t.Fatal(err)
	}
	if ws := clean.Warnings(); len(ws) != 0 {
		t.Fatalf("clean policy warns: %q", ws)
	}
}

func TestWarningsConnaisseurCosign(t *testing.T) {
	p := mustParse(t, `
validators:
- name: default
  type: cosign
  host: {rekor: rekor.example.com}
  trustRoots:
  - name: default
    key: KEY_P256
policy:
- pattern: "*:*"
  with: {verifyInTransparencyLog: true, mode: mutate}
`)
	ws := strings.Join(p.Warnings(), "\n")
	for _, want := range []string{"validators[0] (default).host", "policy[0] (*:*).with.mode \"mutate\"", "verifyInTransparencyLog"} {
		if !strings.Contains(ws, want) {
			t.Errorf("warnings lack %q:\n%s", want, ws)
		}
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

// A wildcard where the registry goes matches across '/', so a pattern meant
// for a family of registry hosts also matches any registry's repository
// that ends the same way: the policy still loads (Connaisseur semantics)
// but says so, naming the rule.
func TestWarningsHostWildcard(t *testing.T) {
	p := mustParse(t, `
validators:
- {name: allow, type: static, approve: true}
- {name: default, type: static, approve: false}
policy:
- {pattern: "*.mirror.corp.example/*", validator: allow}
- {pattern: "reg?.corp.example/app:*", validator: allow}
- {pattern: "*/app:*", validator: allow}
- {pattern: "eu.mirror.corp.example/*", validator: allow}
- {pattern: "docker.io/library/*", validator: allow}
- {pattern: "*:*"}
- {pattern: "*"}
`)
	m, err := p.Match("evil.io/x.mirror.corp.example/payload:1", "")
	if err != nil || m.Rule.Pattern != "*.mirror.corp.example/*" {
		t.Fatalf("the semantics changed: %v %v", m, err)
	}
	ws := strings.Join(p.Warnings(), "\n")
	for i, want := range []bool{true, true, true, false, false, false, false} {
		at := fmt.Sprintf("policy[%d] (%s).pattern: a wildcard in the registry part", i, p.Rules[i].Pattern)
		if got := strings.Contains(ws, at); got != want {
			t.Errorf("rule %d %q: warned %v, want %v\n%s", i, p.Rules[i].Pattern, got, want, ws)
		}
	}
	if !strings.Contains(ws, "write one rule per registry host") {
		t.Errorf("the warning does not say what to write instead:\n%s", ws)
	}
}

// What Connaisseur's own files carry and the node does not use loads, with a
// warning that names the field and says where the node gets the same thing
// (issue 17, items 1-3): options on a static rule, every auth form of its
// chart values and docs, and the alerting section.
func TestWarningsConnaisseurFields(t *testing.T) {
	p := mustParse(t, `
validators:
- name: allow
  type: static
  approve: true
- name: default
  type: cosign
  auth: {username: acr-user, password: hunter2, useKeychain: true, secretName: regcred}
  trustRoots:
  - name: default
    key: KEY_P256
policy:
- pattern: "*:*"
- pattern: "docker.io/library/*"
  validator: allow
  with: {mode: insecureValidateOnly, trustRoot: default}
alerting:
  clusterIdentifier: prod
  admitRequest:
    templates: [{template: slack, receiverUrl: "https://hooks.example/x"}]
`)
	ws := strings.Join(p.Warnings(), "\n")
	for _, want := range []string{
		`policy[1] (docker.io/library/*).with: validator "allow" is static, so the rule's options are ignored`,
		"validators[1] (default).auth.username/password: not used at the node",
		"validators[1] (default).auth.useKeychain: not used at the node",
		"validators[1] (default).auth.secretName: not used at the node",
		"--docker-config",
		"alerting: not used at the node; refusals are reported as Kubernetes Events",
	} {
		if !strings.Contains(ws, want) {
			t.Errorf("warnings lack %q:\n%s", want, ws)
		}
	}
	if strings.Contains(ws, "hunter2") {
		t.Errorf("a warning repeats the password:\n%s", ws)
	}
	m, err := p.Match("redis:7", "")
	if err != nil || m.Validator.Name != "allow" {
		t.Fatalf("the static rule with options does not apply: %v %v", m, err)
	}
}
