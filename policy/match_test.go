package policy

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/nri-image-verifier/nri-image-verifier/imageref"
)

func TestGlobMatch(t *testing.T) {
	tests := []struct {
		p, s string
		want bool
	}{
		{"*", "", true},
		{"*", "docker.io/library/redis:7", true},
		{"*:*", "docker.io/library/redis:7", true},
		{"docker.io/*:*", "docker.io/library/redis:7", true}, // '*' crosses '/'
		{"docker.io/*", "ghcr.io/docker.io/x:1", false},      // anchored at the start
		{"docker.io/library/redis", "docker.io/library/redis-evil", false},
		{"docker.io/library/redis*", "docker.io/library/redis-evil", true},
		{"reg.io/app:v?", "reg.io/app:v1", true},
		{"reg.io/app:v?", "reg.io/app:v10", false},
		{"a*b*c", "aXbYbZc", true},
		{"a*b*c", "aXbYbZ", false},
		{"**a", "bbba", true},
		{"", "", true},
		{"", "a", false},
	}
	for _, tt := range tests {
		if got := globMatch(tt.p, tt.s); got != tt.want {
			t.Errorf("globMatch(%q, %q) = %v, want %v", tt.p, tt.s, got, tt.want)
		}
	}
}

func TestNormalizePattern(t *testing.T) {
	tests := []struct{ in, want string }{
		{"*", "*"},
		{"*:*", "*:*"},
		{"*/app:*", "*/app:*"},
		{"redis", "docker.io/library/redis"},
		{"redis:*", "docker.io/library/redis:*"},
		{"myrepo/*:*", "docker.io/myrepo/*:*"},
		{"docker.io/*:*", "docker.io/*:*"},
		{"docker.io/test:*", "docker.io/library/test:*"},
		{"index.docker.io/library/x", "docker.io/library/x"},
		{"Reg.IO/app", "reg.io/app"},
		{"k8s.gcr.io/*:*", "k8s.gcr.io/*:*"},
		{"localhost:5000/app", "localhost:5000/app"},
		{"localhost/app", "localhost/app"},
		{"*.gcr.io/*", "*.gcr.io/*"},
	}
	for _, tt := range tests {
		if got := normalizePattern(tt.in); got != tt.want {
			t.Errorf("normalizePattern(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// staticPolicy builds a policy with one static validator per distinct
// name and one rule per pattern; rule i uses validator "v<i>" so a test can
// see which rule won from the validator too.
func staticPolicy(t *testing.T, patterns ...string) *Policy {
	t.Helper()
	p := &Policy{}
	for i, pat := range patterns {
		approve := true
		name := fmt.Sprintf("v%d", i)
		p.Validators = append(p.Validators, Validator{Name: name, Type: TypeStatic, Approve: &approve})
		p.Rules = append(p.Rules, Rule{Pattern: pat, Validator: name})
	}
	if err := p.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	return p
}

// The rules and images of Connaisseur's documentation, and the cases of its
// own precedence tests that concern matching images.
func TestMatchConnaisseurExamples(t *testing.T) {
	docRules := []string{
		"*:*",
		"docker.io/*:*",
		"docker.io/library/*:*",
		"docker.io/library/redis:*",
		"docker.io/securesystemsengineering/connaisseur:*",
		"reg.io/*",
		"reg.io/image:*",
	}
	basics := []string{"*:*", "docker.io/myrepo/*:*", "docker.io/myrepo/myimg:*"}
	const sample = "docker.io/securesystemsengineering/sample:v1"
	tests := []struct {
		rules []string
		image string
		want  string
	}{
		{docRules, "docker.io/library/redis:7", "docker.io/library/redis:*"},
		{docRules, "redis:7", "docker.io/library/redis:*"},
		{docRules, "docker.io/library/nginx:1", "docker.io/library/*:*"},
		{docRules, "nginx", "docker.io/library/*:*"},
		{docRules, "docker.io/securesystemsengineering/connaisseur:v3.10.0", "docker.io/securesystemsengineering/connaisseur:*"},
		{docRules, "securesystemsengineering/other:v1", "docker.io/*:*"},
		{docRules, "ghcr.io/x/y:1", "*:*"},
		{docRules, "reg.io/image:1", "reg.io/image:*"},
		{docRules, "reg.io/other:1", "reg.io/*"},
		{docRules, "reg.io/a/b:1", "reg.io/*"},
		{docRules, "reg.io/image", "reg.io/image:*"}, // tag latest
		// docs/basics.md: rule 1, 2 and 3.
		{basics, "docker.io/superrepo/myimg:v1", "*:*"},
		{basics, "docker.io/myrepo/superimg:v1", "docker.io/myrepo/*:*"},
		{basics, "docker.io/myrepo/myimg:v1", "docker.io/myrepo/myimg:*"},
		// Connaisseur's match_test.go, TestCompare.
		{[]string{"*:*", "*/*"}, sample, "*/*"},                          // more components
		{[]string{"docker*/*", "*/*/*"}, sample, "*/*/*"},                // more components
		{[]string{"*", "*:*"}, sample, "*:*"},                            // longer component
		{[]string{"*/*", "docker*/*"}, sample, "docker*/*"},              // longer prefix
		{[]string{"docker.i*/s*", "docker.io/*"}, sample, "docker.io/*"}, // longer prefix, left first
		{[]string{"securesystemsengineering/sample:*", "securesystemsengineering/sample:v*"}, sample, "securesystemsengineering/sample:v*"},
	}
	for _, tt := range tests {
		p := staticPolicy(t, tt.rules...)
		m, err := p.Match(tt.image, "")
		if err != nil {
			t.Errorf("Match(%q) with %q: %v", tt.image, tt.rules, err)
			continue
		}
		if m.Rule.Pattern != tt.want {
			t.Errorf("Match(%q) with %q = %q, want %q (why: %q)", tt.image, tt.rules, m.Rule.Pattern, tt.want, m.Why)
		}
		if m.Validator != p.Validator(m.Rule.Validator) || &p.Rules[m.Index] != m.Rule {
			t.Errorf("Match(%q): Validator/Index do not point at the winning rule", tt.image)
		}
	}
}

// Our deliberate difference from Connaisseur: patterns are anchored at both
// ends, and a pattern without tag or digest matches its repository with any.
func TestMatchAnchoring(t *testing.T) {
	d, o := testDigest, otherDigest
	tests := []struct {
		pattern, image string
		want           bool
	}{
		{"docker.io/test:*", "docker.io/test:tag", true}, // Connaisseur issue 1517
		{"docker.io/library/redis", "docker.io/library/redis-evil:7", false},
		{"docker.io/library/redis", "redis:7", true},
		{"docker.io/library/redis", "redis@" + d, true},
		{"docker.io/library/redis", "redis:7@" + d, true},
		{"docker.io/library/redis:7", "redis:7@" + d, true},
		{"docker.io/library/redis:7", "redis:70", false},
		{"redis", "ghcr.io/redis:1", false},
		{"reg.io/app:v1", "evil.io/reg.io/app:v1", false},
		{"reg.io/app", "reg.io/app/sub:v1", false},
		{"reg.io/app*", "reg.io/app/sub:v1", true},
		{"reg.io/app@" + d, "reg.io/app:v1@" + d, true},
		{"reg.io/app@" + d, "reg.io/app@" + o, false},
		{"reg.io/app@" + d, "reg.io/app:v1", false},
		{"reg.io/app:v1@" + d, "reg.io/app:v1@" + d, true},
		{"reg.io/app:v1@" + d, "reg.io/app:v2@" + d, false},
		{"*", "anything.io/x/y/z:t@" + d, true},
		{"*.gcr.io/*", "k8s.gcr.io/pause:3.9", true},
		{"REG.io/app", "reg.io/app:v1", true},
		{"redis*", "redis.io/x:1", true}, // a wildcard first component is a host
		{"redis*", "redis:7", false},
		{"reg.io/app", "REG.IO/app:v1", true},
	}
	for _, tt := range tests {
		p := staticPolicy(t, tt.pattern)
		m, err := p.Match(tt.image, "")
		if got := err == nil; got != tt.want {
			t.Errorf("pattern %q, image %q: matched = %v, want %v (err %v)", tt.pattern, tt.image, got, tt.want, err)
		}
		if err != nil && !errors.Is(err, ErrNoRule) {
			t.Errorf("pattern %q, image %q: error %v does not wrap ErrNoRule", tt.pattern, tt.image, err)
		}
		if m != nil && m.Image != mustNormalize(t, tt.image) {
			t.Errorf("Match.Image = %q, want the normalised image", m.Image)
		}
	}
}

func mustNormalize(t *testing.T, image string) string {
	t.Helper()
	n, err := imageref.Normalize(image)
	if err != nil {
		t.Fatalf("Normalize(%q): %v", image, err)
	}
	return n
}

func TestMatchWhy(t *testing.T) {
	tests := []struct {
		rules []string
		image string
		why   []string
	}{
		{[]string{"docker.io/*", "docker.io/library/*:*", "*:*"}, "redis:7", []string{
			`beats "docker.io/*": more path components (3 > 2)`,
			`beats "*:*": more path components (3 > 1)`,
		}},
		// The example in REFERENCE.md.
		{[]string{"*:*", "docker.io/*:*", "docker.io/library/*:*", "docker.io/library/redis:*",
			"docker.io/securesystemsengineering/connaisseur:*", "reg.io/*", "reg.io/image:*"}, "redis:7", []string{
			`beats "*:*": more path components (3 > 1)`,
			`beats "docker.io/*:*": more path components (3 > 2)`,
			`beats "docker.io/library/*:*": longer common prefix with image component 3 "redis:7" (6 > 0)`,
		}},
		{[]string{"docker.io/myorg/*", "docker.io/myorg/app:*"}, "docker.io/myorg/app:v1", []string{
			`beats "docker.io/myorg/*": longer common prefix with image component 3 "app:v1" (4 > 0)`,
		}},
		{[]string{"*/*", "docker*/*"}, "docker.io/x/y:1", []string{
			`beats "*/*": longer common prefix with image component 1 "docker.io" (6 > 0)`,
		}},
		{[]string{"*", "*:*"}, "reg.io/x:1", []string{
			`beats "*": longer path component 1 (3 > 1 characters)`,
		}},
		{[]string{"reg.io/*", "reg.io/*"}, "reg.io/x:1", []string{
			`beats "reg.io/*": equally specific, and later in the file (policy[1] after policy[0])`,
		}},
	}
	for _, tt := range tests {
		m, err := staticPolicy(t, tt.rules...).Match(tt.image, "")
		if err != nil {
			t.Fatalf("Match(%q): %v", tt.image, err)
		}
		if strings.Join(m.Why, "\n") != strings.Join(tt.why, "\n") {
			t.Errorf("Match(%q) with %q: Why =\n%s\nwant\n%s", tt.image, tt.rules, strings.Join(m.Why, "\n"), strings.Join(tt.why, "\n"))
		}
	}
}

func TestMatchNamespaces(t *testing.T) {
	p := staticPolicy(t, "*:*", "*:*", "docker.io/library/*", "ghcr.io/*")
	p.Rules[1].Namespaces = []string{"prod", "staging"}
	p.Rules[3].Namespaces = []string{"prod"}
	tests := []struct {
		image, ns string
		want      int // rule index, -1 for no rule
		why       string
	}{
		{"reg.io/x:1", "prod", 1, `beats "*:*": restricted by namespaces, the other rule is not`},
		{"reg.io/x:1", "staging", 1, "restricted by namespaces"},
		{"reg.io/x:1", "dev", 0, ""}, // the restricted rule is skipped
		{"reg.io/x:1", "", 0, ""},
		// More specific beats restricted.
		{"redis:7", "prod", 2, "more path components"},
		{"ghcr.io/x:1", "prod", 3, "more path components (2 > 1)"},
		{"ghcr.io/x:1", "dev", 0, ""},
	}
	for _, tt := range tests {
		m, err := p.Match(tt.image, tt.ns)
		if err != nil {
			t.Errorf("Match(%q, %q): %v", tt.image, tt.ns, err)
			continue
		}
		if m.Index != tt.want {
			t.Errorf("Match(%q, %q) = policy[%d], want policy[%d]", tt.image, tt.ns, m.Index, tt.want)
		}
		if !strings.Contains(strings.Join(m.Why, "\n"), tt.why) {
			t.Errorf("Match(%q, %q): Why %q lacks %q", tt.image, tt.ns, m.Why, tt.why)
		}
	}

	only := staticPolicy(t, "*")
	only.Rules[0].Namespaces = []string{"prod"}
	for _, ns := range []string{"", "dev"} {
		_, err := only.Match("redis", ns)
		if !errors.Is(err, ErrNoRule) || !strings.Contains(err.Error(), "docker.io/library/redis:latest") {
			t.Errorf("Match in namespace %q: error %v, want ErrNoRule naming the image", ns, err)
		}
		if ns != "" && !strings.Contains(err.Error(), ns) {
			t.Errorf("Match in namespace %q: error %v does not name the namespace", ns, err)
		}
	}
}

func TestMatchMode(t *testing.T) {
	tests := []struct {
		policy, rule, want Mode
	}{
		{"", "", ModeEnforce},
		{ModeAudit, "", ModeAudit},
		{ModeEnforce, "", ModeEnforce},
		{ModeAudit, ModeEnforce, ModeEnforce},
		{"", ModeAudit, ModeAudit},
		{ModeEnforce, ModeAudit, ModeAudit},
	}
	for _, tt := range tests {
		p := staticPolicy(t, "*")
		p.Mode, p.Rules[0].Mode = tt.policy, tt.rule
		m, err := p.Match("redis", "")
		if err != nil || m.Mode != tt.want {
			t.Errorf("policy mode %q, rule mode %q: got %v, %v; want %q", tt.policy, tt.rule, m, err, tt.want)
		}
	}
}

func TestMatchErrors(t *testing.T) {
	p := staticPolicy(t, "*")
	if _, err := p.Match(testDigest, ""); !errors.Is(err, imageref.ErrImageID) || errors.Is(err, ErrNoRule) {
		t.Errorf("Match(image ID) error = %v, want ErrImageID", err)
	}
	if _, err := p.Match("Not A Ref", ""); err == nil || errors.Is(err, ErrNoRule) {
		t.Errorf("Match(bad ref) error = %v, want a parse error", err)
	}
	// A policy built in code and never validated: fail, never skip a rule.
	bad := staticPolicy(t, "*")
	bad.Rules = append(bad.Rules, Rule{Pattern: "reg.io/[ab"})
	if _, err := bad.Match("redis", ""); err == nil || !strings.Contains(err.Error(), "policy[1].pattern") {
		t.Errorf("Match with a bad pattern: error = %v, want one naming policy[1].pattern", err)
	}
	missing := staticPolicy(t, "*")
	missing.Rules[0].Validator = "gone"
	if _, err := missing.Match("redis", ""); err == nil || !strings.Contains(err.Error(), `"gone"`) {
		t.Errorf("Match with a missing validator: error = %v", err)
	}
}

func BenchmarkMatch(b *testing.B) {
	p := &Policy{Validators: []Validator{{Name: "default", Type: TypeStatic, Approve: new(bool)}}}
	for _, pat := range []string{"*:*", "docker.io/*:*", "docker.io/library/*:*", "docker.io/library/redis:*",
		"docker.io/securesystemsengineering/connaisseur:*", "reg.io/*", "reg.io/image:*", "k8s.gcr.io/*", "ghcr.io/org/*"} {
		p.Rules = append(p.Rules, Rule{Pattern: pat})
	}
	if err := p.Validate(); err != nil {
		b.Fatal(err)
	}
	m := NewMatcher(p)
	for b.Loop() {
		if _, err := m.Match("docker.io/library/redis:7@"+testDigest, "default"); err != nil {
			b.Fatal(err)
		}
	}
}
