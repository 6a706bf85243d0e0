package policy

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// Issue #17: a Connaisseur `validators` + `policy` pair loads unchanged.
// Each fixture is written in Connaisseur's documented format; where this
// gate keeps a deliberate difference, the file still loads and a warning
// names the field.

// connaisseurStatics are Connaisseur's chart defaults for static validators.
const connaisseurStatics = `
validators:
- name: allow
  type: static
  approve: true
- name: deny
  type: static
  approve: false
`

// wantWarnings checks that every string of want is in a warning of ws,
// and, for an empty want, that no warning mentions about.
func wantWarnings(t *testing.T, ws []string, about string, want []string) {
	t.Helper()
	all := strings.Join(ws, "\n")
	if len(want) == 0 && strings.Contains(all, about) {
		t.Errorf("unexpected warnings about %q:\n%s", about, all)
	}
	for _, w := range want {
		if !strings.Contains(all, w) {
			t.Errorf("warnings lack %q:\n%s", w, all)
		}
	}
}

// Item 7: equally specific rules go to the later one, as in Connaisseur
// (its Compare keeps the newer match on a tie), with a warning naming both.
func TestConnaisseurTies(t *testing.T) {
	tests := []struct {
		name   string
		policy string
		image  string
		ns     string
		want   int // index of the rule that applies
		warn   []string
	}{
		{"duplicate pattern", `
policy:
- pattern: "docker.io/library/*:*"
  validator: deny
- pattern: "docker.io/library/*:*"
  validator: allow
`, "redis:7", "", 1, []string{"policy[1] (docker.io/library/*:*).pattern: exactly as specific as policy[0] (docker.io/library/*:*)"}},
		{"short and qualified", `
policy:
- pattern: "redis:*"
  validator: allow
- pattern: "docker.io/library/redis:*"
  validator: deny
`, "redis:7", "", 1, []string{"policy[1] (docker.io/library/redis:*).pattern: exactly as specific as policy[0] (redis:*)"}},
		{"wildcards at one place", `
policy:
- pattern: "reg.example.com/x*"
  validator: deny
- pattern: "reg.example.com/x?"
  validator: allow
`, "reg.example.com/xy:1", "", 1, []string{"policy[1] (reg.example.com/x?).pattern: exactly as specific as policy[0]"}},
		{"other heads, not warned", `
policy:
- pattern: "*/a/*"
  validator: deny
- pattern: "*/b/*"
  validator: allow
`, "reg.example.com/x/a/b/c:1", "", 1, nil},
		{"namespaces apart, not warned", `
policy:
- pattern: "reg.example.com/*"
  validator: deny
  namespaces: [a]
- pattern: "reg.example.com/*"
  validator: allow
  namespaces: [b]
`, "reg.example.com/app:1", "a", 0, nil},
		{"namespaces meet", `
policy:
- pattern: "reg.example.com/*"
  validator: deny
  namespaces: [a, b]
- pattern: "reg.example.com/*"
  validator: allow
  namespaces: [b]
`, "reg.example.com/app:1", "b", 1, []string{"policy[1] (reg.example.com/*).pattern: exactly as specific as policy[0]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustParse(t, connaisseurStatics+tt.policy)
			m, err := p.Match(tt.image, tt.ns)
			if err != nil {
				t.Fatal(err)
			}
			if m.Index != tt.want {
				t.Errorf("Match(%q) = policy[%d], want policy[%d] (why: %q)", tt.image, m.Index, tt.want, m.Why)
			}
			wantWarnings(t, p.Warnings(), "exactly as specific", tt.warn)
		})
	}
}

// Item 8: keyless regexes are anchored here and found anywhere in the
// value by Connaisseur (cosign). Connaisseur's documented keyless example
// loads, with a warning on each regex whose two readings differ.
func TestConnaisseurKeylessRegex(t *testing.T) {
	tests := []struct {
		issuerRegex, subjectRegex string
		warn                      []string
	}{
		// Connaisseur's docs/validators/sigstore_cosign.md example.
		{"github", "", []string{
			`validators[0] (keylessvalidator).trustRoots[0] (keyless).keyless.issuerRegex "github": read anchored, as ^(?:github)$`,
			`write "^(?:github)$" to keep this meaning in both, or ".*(?:github).*" for Connaisseur's`,
		}},
		{"", `https://github\.com/org/.*`, []string{`keyless.subjectRegex "https://github\\.com/org/.*": read anchored`}},
		{`^https://github\.com/org/`, "", []string{`keyless.issuerRegex`}},
		{`^a$|b`, "", []string{`keyless.issuerRegex`}},
		{`^a|^b`, "", []string{`keyless.issuerRegex`}},
		{`foo\$`, "", []string{`keyless.issuerRegex`}},
		// The same in both readings: no warning.
		{`^https://token\.actions\.githubusercontent\.com$`, `^https://github\.com/org/.*$`, nil},
		{".*github.*", `.+@example\.com$`, nil},
		{`(^a$|^b$)`, `(?s).*x.*`, nil},
		{`^(a|b)$`, `\Aalice\z`, nil},
	}
	for _, tt := range tests {
		keyless := "      subject: philipp@example.com\n"
		if tt.subjectRegex != "" {
			keyless = "      subjectRegex: '" + tt.subjectRegex + "'\n"
		}
		if tt.issuerRegex != "" {
			keyless += "      issuerRegex: '" + tt.issuerRegex + "'\n"
		} else {
			keyless += "      issuer: https://accounts.example.com\n"
		}
		p := mustParse(t, `
validators:
- name: keylessvalidator
  type: cosign
  trustRoots:
  - name: keyless
    keyless:
`+keyless+`policy:
- pattern: "reg.example.com/*"
  validator: keylessvalidator
  with: {trustRoot: keyless}
`)
		wantWarnings(t, p.Warnings(), "keyless.", tt.warn)
	}
}

// Item 10: Connaisseur finds a pattern anywhere in the image name, so a
// short deny rule such as "redis" also denies docker.io/bitnami/redis:7.
// Here it is qualified and anchored: the file loads, and the deny rule
// without a registry is warned about.
func TestConnaisseurShortDenyRules(t *testing.T) {
	tests := []struct {
		pattern, validator string
		warn               []string
		bitnamiDenied      bool // is docker.io/bitnami/redis:7 denied
	}{
		{"redis", "deny", []string{
			`policy[1] (redis).pattern: a deny rule without a registry is read as "docker.io/library/redis"`,
			`write "*/redis" to deny that name anywhere, or "*redis*" for Connaisseur's meaning`,
		}, false},
		{"bitnami/redis:*", "deny", []string{`policy[1] (bitnami/redis:*).pattern: a deny rule without a registry`}, true},
		{"docker.io/library/redis", "deny", nil, false},
		{"*/redis", "deny", nil, true},
		{"*redis*", "deny", nil, true},
		{"redis", "allow", nil, false},
		{"*", "deny", nil, false}, // no registry part to miss; "*:*" is longer and wins
	}
	for _, tt := range tests {
		p := mustParse(t, connaisseurStatics+`
policy:
- pattern: "*:*"
  validator: allow
- pattern: "`+tt.pattern+`"
  validator: `+tt.validator+`
`)
		// No warning of any kind but the deny rule's: a wildcard where the
		// registry goes is what a deny rule wants.
		ws := p.Warnings()
		wantWarnings(t, ws, "policy[1]", tt.warn)
		if len(ws) > 1 {
			t.Errorf("%s: more warnings than one: %q", tt.pattern, ws)
		}
		m, err := p.Match("docker.io/bitnami/redis:7", "")
		if err != nil {
			t.Fatal(err)
		}
		if denied := m.Index == 1 && tt.validator == "deny"; denied != tt.bitnamiDenied {
			t.Errorf("%s: docker.io/bitnami/redis:7 goes to policy[%d], denied = %v, want %v", tt.pattern, m.Index, denied, tt.bitnamiDenied)
		}
	}
}

// Item 11: a value of the wrong type is reported with its field path, like
// every other policy error, not as encoding/json's "cannot unmarshal ...
// into Go struct field ...". The fixture is Connaisseur's chart layout.
func TestConnaisseurTypeErrors(t *testing.T) {
	const head = "validators:\n- name: default\n  type: cosign\n"
	tests := []struct {
		name, yaml, want string
	}{
		{"file a list", "- validators", "the policy must be an object with validators and policy, not a list"},
		{"validators an object", "validators: {name: default}\npolicy: [{pattern: '*'}]", "validators: must be a list, not an object"},
		{"validator a string", "validators: [default]\npolicy: [{pattern: '*'}]", "validators[0]: must be an object (a mapping of fields), not a string"},
		{"approve a string", "validators: [{name: default, type: static, approve: 'false'}]\npolicy: [{pattern: '*'}]", "validators[0].approve: must be true or false, not a string"},
		{"trustRoots an object", head + "  trustRoots: {name: default, key: x}\npolicy: [{pattern: '*'}]", "validators[0].trustRoots: must be a list, not an object"},
		{"key a list", head + "  trustRoots: [{name: default, key: [a, b]}]\npolicy: [{pattern: '*'}]", "validators[0].trustRoots[0].key: must be a string, not a list"},
		{"keyless a string", head + "  trustRoots: [{name: default, keyless: github}]\npolicy: [{pattern: '*'}]", "validators[0].trustRoots[0].keyless: must be an object (a mapping of fields), not a string"},
		{"host a number", head + "  host: 4443\n  trustRoots: [{name: default, key: x}]\npolicy: [{pattern: '*'}]", "validators[0].host: must be a notary server (a string) or an object, not the number 4443"},
		{"auth a string", head + "  auth: hunter2\n  trustRoots: [{name: default, key: x}]\npolicy: [{pattern: '*'}]", "validators[0].auth: must be an object (a mapping of fields), not a string"},
		{"useKeychain a string", head + "  auth: {useKeychain: 'yes please'}\n  trustRoots: [{name: default, key: x}]\npolicy: [{pattern: '*'}]", "validators[0].auth.useKeychain: must be true or false, not a string"},
		{"policy an object", head + "  trustRoots: [{name: default, key: x}]\npolicy: {pattern: '*'}", "policy: must be a list, not an object"},
		{"namespaces a string", head + "  trustRoots: [{name: default, key: x}]\npolicy: [{pattern: '*'}, {pattern: x, namespaces: prod}]", "policy[1].namespaces: must be a list, not a string"},
		{"with a list", head + "  trustRoots: [{name: default, key: x}]\npolicy: [{pattern: '*', with: [trustRoot]}]", "policy[0].with: must be an object (a mapping of fields), not a list"},
		{"threshold a string", head + "  trustRoots: [{name: default, key: x}]\npolicy: [{pattern: '*', with: {threshold: two}}]", "policy[0].with.threshold: must be a whole number, not a string"},
		{"threshold a fraction", head + "  trustRoots: [{name: default, key: x}]\npolicy: [{pattern: '*', with: {threshold: 1.5}}]", "policy[0].with.threshold: must be a whole number, not the number 1.5"},
		{"threshold huge", head + "  trustRoots: [{name: default, key: x}]\npolicy: [{pattern: '*', with: {threshold: 1e12}}]", "policy[0].with.threshold: 1e+12 is out of range"},
		{"required a string", head + "  trustRoots: [{name: default, key: x}]\npolicy: [{pattern: '*', with: {required: default}}]", "policy[0].with.required: must be a list, not a string"},
		{"verifySCT a string", head + "  trustRoots: [{name: default, key: x}]\npolicy: [{pattern: '*', with: {verifySCT: 'off'}}]", "policy[0].with.verifySCT: must be true or false, not a string"},
		{"conditions a bool", head + "  trustRoots: [{name: default, key: x}]\npolicy: [{pattern: '*', with: {attestations: [{predicateType: x, conditions: true}]}}]", "policy[0].with.attestations[0].conditions: must be a list, not true"},
		{"mode a list", "mode: [audit]\n" + head + "  trustRoots: [{name: default, key: x}]\npolicy: [{pattern: '*'}]", "mode: must be a string, not a list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml))
			if err == nil {
				t.Fatal("loads")
			}
			var fe *FieldError
			if !errors.As(err, &fe) || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "unmarshal") {
				t.Errorf("error = %v\nwant a field error %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error repeats a string value: %v", err)
			}
		})
	}
	// A number or boolean where a string goes is its text, as in YAML
	// loaders (Connaisseur's yaml.v3 too): a name or a key that is a
	// number loads, and the key's own check then names the field.
	p, err := Parse([]byte(head + "  trustRoots: [{name: 2024, key: 42}]\npolicy: [{pattern: '*', with: {trustRoot: 2024}}]"))
	if err != nil {
		t.Fatal(err)
	}
	if r := p.Validators[0].TrustRoots[0]; r.Name != "2024" || r.Key != "42" {
		t.Errorf("trust root = %+v", r)
	}
}

// Item 4: classes and alternatives, as Connaisseur's glob library reads
// them. '*' still crosses '/', and patterns stay anchored and qualified.
func TestConnaisseurGlobSyntax(t *testing.T) {
	p := mustParse(t, connaisseurStatics+`
policy:
- pattern: "docker.io/library/{redis,nginx}:*"
  validator: allow
- pattern: "reg.example.com/app-[0-9]:v[!0]*"
  validator: allow
- pattern: "{eu,us}.mirror.example.com/team/*"
  validator: allow
- pattern: "{redis,postgres}:[0-9]*"
  validator: allow
- pattern: "reg.example.com/{a,{b*,c}d,}x"
  validator: allow
- pattern: "reg.example.com/app[._-]x"
  validator: allow
`)
	tests := []struct {
		image string
		want  int // -1: no rule
	}{
		{"redis:7", 3}, // more specific (longer) than policy[0]
		{"docker.io/library/nginx:1.25", 0},
		{"docker.io/library/postgres:16", 3},
		{"docker.io/library/postgres:latest", -1},
		{"docker.io/library/redis-evil:7", -1},
		{"reg.example.com/app-3:v1", 1},
		{"reg.example.com/app-3:v0", -1},
		{"reg.example.com/app-y:v1", -1},
		{"reg.example.com/app-33:v1", -1},
		{"eu.mirror.example.com/team/app:1", 2},
		{"ap.mirror.example.com/team/app:1", -1},
		{"evil.example.com/eu.mirror.example.com/team/app:1", -1},
		{"reg.example.com/ax", 4},
		{"reg.example.com/bzz/qdx", 4}, // '*' crosses '/' inside alternatives too
		{"reg.example.com/cdx", 4},
		{"reg.example.com/x", 4},
		{"reg.example.com/dx", -1},
		{"reg.example.com/app-x", 5},
		{"reg.example.com/app_x", 5},
		{"reg.example.com/appxx", -1},
	}
	for _, tt := range tests {
		m, err := p.Match(tt.image, "")
		switch {
		case tt.want < 0 && !errors.Is(err, ErrNoRule):
			t.Errorf("Match(%q) = %v, %v; want no rule", tt.image, m, err)
		case tt.want >= 0 && (err != nil || m.Index != tt.want):
			t.Errorf("Match(%q) = %v, %v; want policy[%d]", tt.image, m, err, tt.want)
		}
	}
	// Names in alternatives are names, not registries: nothing to warn of.
	wantWarnings(t, p.Warnings(), "registry part", nil)
}

// Invalid classes and alternatives are load errors naming the rule.
func TestConnaisseurGlobErrors(t *testing.T) {
	tests := []struct{ pattern, want string }{
		{"reg.example.com/[", `'[' at position 17 is never closed`},
		{"reg.example.com/app:[0-9", `'[' at position 21 is never closed`},
		{"reg.example.com/{a,b", `'{' at position 17 is never closed`},
		{"reg.example.com/{a,{b}", `'{' at position 17 is never closed`},
		{"reg.example.com/a}", `'}' at position 18 closes no '{'`},
		{"reg.example.com/a]", `']' at position 18 closes no '['`},
		{"reg.example.com/[]", `class "[]" at position 17: is empty`},
		{"reg.example.com/[!]", `class "[!]" at position 17: is empty`},
		{"reg.example.com/[a-z0-9]", `holds one range or a list of characters, not both`},
		{"reg.example.com/[ab-d]", `'-' inside a list is the character '-'`},
		{"reg.example.com/[a-]", `reads as an unfinished range`},
		{"reg.example.com/[z-a]", `range z-a must run up between two digits or two letters of one case`},
		{"reg.example.com/[A-z]", `range A-z must run up`},
		{"reg.example.com/[a/b]", `character '/' cannot be in a class`},
		{"reg.example.com/[a:]", `character ':' cannot be in a class`},
		{"reg.example.com/{library/redis,x}", `'/' at position 25 is inside {...}`},
		{"reg.example.com/a,b", `',' at position 18 is outside {...}`},
		{"reg.example.com/!a", `'!' at position 17 is outside [...]`},
		{`reg.example.com/\a`, `escapes ('\') are not supported`},
	}
	for _, tt := range tests {
		_, err := Parse([]byte(connaisseurStatics + "policy:\n- pattern: \"*\"\n  validator: deny\n- pattern: '" + tt.pattern + "'\n  validator: allow\n"))
		want := fmt.Sprintf("policy[1].pattern: %q: ", tt.pattern) // names the rule
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error = %v\nwant %q and %q", tt.pattern, err, want, tt.want)
		}
	}
}

// Precedence between patterns with classes and alternatives is
// Connaisseur's: its specificity (components, then common prefix with the
// image's components, then component lengths, the later rule on a tie) is
// computed on the pattern text, brackets and braces counted as written.
// connaisseurWinner is that algorithm, written from its description, over
// fully qualified patterns (which this gate's qualification leaves alone).
func TestConnaisseurGlobPrecedence(t *testing.T) {
	patterns := []string{
		"docker.io/library/*:*",
		"docker.io/library/{redis,nginx}:*",
		"docker.io/library/redis:*",
		"docker.io/library/re[d]is:*",
		"docker.io/library/redis*",
		"docker.io/*/{redis,nginx}:*",
		"docker.io/library/{nginx,redis}:[0-9]*",
		"docker.io/library/[a-z]edis:7",
		"docker.io/library/{redis,nginx}:7",
	}
	images := []string{"docker.io/library/redis:7", "docker.io/library/nginx:1", "docker.io/library/redis:alpine",
		"docker.io/library/xedis:7", "docker.io/library/redis-x:1"}
	approve := true
	p := &Policy{Validators: []Validator{{Name: "default", Type: TypeStatic, Approve: &approve}}}
	for _, pat := range patterns {
		p.Rules = append(p.Rules, Rule{Pattern: pat})
	}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, img := range images {
		m, err := p.Match(img, "")
		if err != nil {
			t.Fatal(err)
		}
		var matching []int
		for i := range p.Rules {
			if compilePattern(p.Rules[i].Pattern).matchesAny([]string{img}) {
				matching = append(matching, i)
			}
		}
		if want := connaisseurWinner(patterns, matching, img); m.Index != want {
			t.Errorf("%s: policy[%d] %q, Connaisseur would choose policy[%d] %q (why: %q)", img, m.Index, patterns[m.Index], want, patterns[want], m.Why)
		}
	}
}

func connaisseurWinner(patterns []string, matching []int, image string) int {
	imgComps := strings.Split(image, "/")
	best := -1
	for _, i := range matching {
		if best < 0 || !connaisseurBeats(patterns[best], patterns[i], imgComps) {
			best = i // the later wins unless the earlier is more specific
		}
	}
	return best
}

// connaisseurBeats says whether pattern a is strictly more specific than b.
func connaisseurBeats(a, b string, img []string) bool {
	ac, bc := strings.Split(a, "/"), strings.Split(b, "/")
	if len(ac) != len(bc) {
		return len(ac) > len(bc)
	}
	for i := range ac {
		if pa, pb := commonPrefix(ac[i], img[i]), commonPrefix(bc[i], img[i]); pa != pb {
			return pa > pb
		}
	}
	for i := range ac {
		if len(ac[i]) != len(bc[i]) {
			return len(ac[i]) > len(bc[i])
		}
	}
	return false
}
