package policy

import (
	"regexp"
	"strings"
	"testing"
	"unicode"

	"github.com/nri-image-verifier/nri-image-verifier/imageref"
)

// FuzzGlob: the matcher agrees with a regular expression built from the
// pattern ('*' is any run of bytes, '?' one byte, a class a regexp class,
// alternatives a regexp alternation), on any input. The matcher for '*'
// and '?' alone (globMatch) and the one for classes and alternatives
// (compileGlob) must both agree with it where they apply.
func FuzzGlob(f *testing.F) {
	f.Add("*", "")
	f.Add("docker.io/library/*", "docker.io/library/redis:7")
	f.Add("a*b*c*d*e*f*g", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	f.Add("*/app:?", "reg.io/team/app:1")
	f.Add("reg.io/app", "reg.io/app-evil")
	f.Add("**??**", "xyz")
	f.Add("a?", "a\xff")
	f.Add("docker.io/library/{redis,nginx}:[0-9]*", "docker.io/library/redis:7")
	f.Add("reg.io/{a,{b*,c}d,}x", "reg.io/bzzdx")
	f.Add("reg.io/[!a-f]pp:[._-]", "reg.io/zpp:-")
	f.Add("{*.,}example.com/*", "www.example.com/x")
	f.Add("a{b,c", "ab")
	f.Add("[a-z0-9]", "a")
	f.Fuzz(func(t *testing.T, p, s string) {
		if len(p) > maxPatternLen || len(s) > 4*maxPatternLen {
			return
		}
		prog, err := compileGlob(p)
		// The matcher is byte-wise; only compare where the regexp is too
		// (valid UTF-8 on both sides, where a byte is a character).
		if !isASCII(p) || !isASCII(s) {
			globMatch(p, s) // must not panic or hang
			if err == nil {
				prog.match(s)
			}
			return
		}
		if err != nil {
			return // not a pattern; checkPattern says so at load
		}
		want := regexp.MustCompile(globRegexp(p)).MatchString(s)
		if got := prog.match(s); got != want {
			t.Fatalf("compileGlob(%q).match(%q) = %v, regexp %s says %v", p, s, got, globRegexp(p), want)
		}
		if strings.ContainsAny(p, globSyntax) {
			return
		}
		if got := globMatch(p, s); got != want {
			t.Fatalf("globMatch(%q, %q) = %v, regexp says %v", p, s, got, want)
		}
	})
}

// globRegexp writes a valid pattern as an anchored regular expression,
// character by character: the test's own reading of the syntax.
func globRegexp(p string) string {
	var re strings.Builder
	re.WriteString(`(?s)\A`)
	depth := 0
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c == '*':
			re.WriteString(`(?:.|[\x00-\xff])*`)
		case c == '?':
			re.WriteString(`(?:.|[\x00-\xff])`)
		case c == '[':
			end := i + strings.IndexByte(p[i:], ']')
			body := p[i+1 : end]
			re.WriteString("[")
			if strings.HasPrefix(body, "!") {
				re.WriteString("^")
				body = body[1:]
			}
			for j := 0; j < len(body); j++ {
				if body[j] == '-' {
					re.WriteByte('-') // a range's, or first or last: literal
				} else {
					re.WriteString(regexp.QuoteMeta(body[j : j+1]))
				}
			}
			re.WriteString("]")
			i = end
		case c == '{':
			depth++
			re.WriteString("(?:")
		case c == ',' && depth > 0:
			re.WriteString("|")
		case c == '}' && depth > 0:
			depth--
			re.WriteString(")")
		default:
			re.WriteString(regexp.QuoteMeta(p[i : i+1]))
		}
	}
	re.WriteString(`\z`)
	return re.String()
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
		"reg.io/app:v1@" + testDigest, "a@b@c", "{redis,nginx}:[0-9]*", "[!a]x/{b,c/d}"} {
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
		if strings.ContainsAny(p, globMeta) {
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
