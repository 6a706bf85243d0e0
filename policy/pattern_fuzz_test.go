package policy

import (
	"regexp"
	"strings"
	"testing"
	"unicode"

	"github.com/nri-image-verifier/nri-image-verifier/imageref"
)

// FuzzGlob: the matcher agrees with a regular expression built from the
// pattern ('*' is any run of bytes, '?' one byte), on any input.
func FuzzGlob(f *testing.F) {
	f.Add("*", "")
	f.Add("docker.io/library/*", "docker.io/library/redis:7")
	f.Add("a*b*c*d*e*f*g", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	f.Add("*/app:?", "reg.io/team/app:1")
	f.Add("reg.io/app", "reg.io/app-evil")
	f.Add("**??**", "xyz")
	f.Add("a?", "a\xff")
	f.Fuzz(func(t *testing.T, p, s string) {
		if len(p) > maxPatternLen || len(s) > 4*maxPatternLen {
			return
		}
		var re strings.Builder
		re.WriteString(`(?s)\A`)
		for i := 0; i < len(p); i++ {
			switch p[i] {
			case '*':
				re.WriteString(`(?:.|[\x00-\xff])*`)
			case '?':
				re.WriteString(`(?:.|[\x00-\xff])`)
			default:
				re.WriteString(regexp.QuoteMeta(string(p[i])))
			}
		}
		re.WriteString(`\z`)
		// The matcher is byte-wise; only compare where the regexp is too
		// (valid UTF-8 on both sides, where a byte is a character).
		if !isASCII(p) || !isASCII(s) {
			globMatch(p, s) // must not panic or hang
			return
		}
		want := regexp.MustCompile(re.String()).MatchString(s)
		if got := globMatch(p, s); got != want {
			t.Fatalf("globMatch(%q, %q) = %v, regexp says %v", p, s, got, want)
		}
	})
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] > unicode.MaxASCII {
			return false
		}
	}
	return true
}

// FuzzPattern: pattern validation never panics; a valid pattern's
// normalisation is idempotent; and a valid wildcard-free pattern that is
// also an image reference matches that image (a rule always applies to
// the image it names).
func FuzzPattern(f *testing.F) {
	for _, s := range []string{"redis", "redis:*", "docker.io/redis", "*:*", "*/app", "reg.io/app@" + testDigest,
		"Reg.IO/app", "localhost/app", "index.docker.io/x", "a//b", "reg.io/app:", "reg.io/[ab]", "*", "?",
		"reg.io/app:v1@" + testDigest, "a@b@c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		c := compilePattern(p)
		if c.err != nil {
			return
		}
		if again := normalizePattern(c.norm); again != c.norm {
			t.Fatalf("normalizePattern not idempotent: %q -> %q -> %q", p, c.norm, again)
		}
		if hasWildcard(p) {
			return
		}
		approve := true
		pol := &Policy{
			Validators: []Validator{{Name: "default", Type: TypeStatic, Approve: &approve}},
			Rules:      []Rule{{Pattern: p}},
		}
		if err := pol.Validate(); err != nil {
			t.Fatalf("pattern %q compiles but the policy does not validate: %v", p, err)
		}
		if _, err := imageref.Normalize(p); err != nil {
			return // not an image reference, e.g. a bare "reg.io:5000"
		}
		if _, err := pol.Match(p, ""); err != nil {
			t.Fatalf("pattern %q does not match the image it names: %v", p, err)
		}
	})
}
