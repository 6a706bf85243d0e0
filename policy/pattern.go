package policy

import (
	"errors"
	"fmt"
	"strings"

	"github.com/nri-image-verifier/nri-image-verifier/imageref"
)

// maxPatternLen bounds the matcher's work, which grows with the product of
// pattern and image lengths. Real patterns are far shorter.
const maxPatternLen = 512

// globMeta holds the characters that open a wildcard, a class or
// alternatives. None can occur in an image reference.
const globMeta = "*?[{"

// checkPattern says what is wrong with a rule pattern, if anything.
// Patterns are image references with Connaisseur's glob syntax: '*' (any
// run of characters, '/' included), '?' (any one character), classes
// ([a-f], [!abc]) and alternatives ({a,b}); see glob.go.
func checkPattern(p string) error {
	if p == "" {
		return errors.New("must not be empty")
	}
	if len(p) > maxPatternLen {
		return fmt.Errorf("is %d characters long, at most %d allowed", len(p), maxPatternLen)
	}
	for _, c := range p {
		switch {
		case c == '\\':
			// Connaisseur's glob library reads it as an escape; no
			// character of an image reference needs one.
			return errors.New("escapes ('\\') are not supported: no character of an image reference needs one")
		case !isPatternChar(c):
			return fmt.Errorf("character %q cannot appear in an image reference", c)
		}
	}
	if strings.ContainsAny(p, globSyntax) {
		if _, err := compileGlob(p); err != nil {
			return err
		}
	}
	if strings.Count(p, "@") > 1 {
		return errors.New("has more than one '@'")
	}
	comps := strings.Split(normalizePattern(p), "/")
	for i, comp := range comps {
		if comp == "" {
			return errors.New("has an empty path component (leading, trailing or double '/')")
		}
		if i == 0 {
			continue // the host, or a wildcard standing for it
		}
		if i == len(comps)-1 {
			comp = namePart(comp)
			if comp == "" {
				return errors.New("has no repository name before ':' or '@'")
			}
		}
		if comp != strings.ToLower(comp) {
			return fmt.Errorf("repository path component %q is not lower case, so no image can match it", comp)
		}
	}
	return nil
}

func isPatternChar(c rune) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		strings.ContainsRune("._-/:@+*?", c) || strings.ContainsRune(globSyntax, c)
}

// globSyntax is the syntax of classes and alternatives.
const globSyntax = "[]{},!"

// hasWildcard says whether s holds something that may match any character
// ('/' included), and so may stand for a registry: '*', '?' or a negated
// class. Other classes and alternatives stand for names, as letters do.
func hasWildcard(s string) bool { return strings.ContainsAny(s, "*?") || strings.Contains(s, "[!") }

// namePart is a last path component without its tag or digest.
func namePart(comp string) string {
	if i := strings.IndexAny(comp, ":@"); i >= 0 {
		return comp[:i]
	}
	return comp
}

// normalizePattern qualifies a pattern the way imageref.Normalize qualifies an image,
// so that "redis:*" and "docker.io/library/redis:*" mean the same:
//   - a first component that looks like a host ('.', ':' or "localhost") is
//     lower-cased, and index.docker.io is written docker.io;
//   - otherwise, without a wildcard in it, it is a Docker Hub path and gets
//     "docker.io/" (and "library/" when it is the only component);
//   - a first component with a wildcard is left alone, since the wildcard
//     may stand for the registry ("*:*", "*/app:*").
//
// On Docker Hub, a single repository component gets "library/" as well.
func normalizePattern(p string) string {
	first, rest, hasSlash := strings.Cut(p, "/")
	if !hasSlash {
		if hasWildcard(namePart(p)) {
			return p
		}
		return imageref.DockerHub + "/library/" + p
	}
	if !imageref.LooksLikeHost(first) {
		if hasWildcard(first) {
			return p
		}
		return imageref.DockerHub + "/" + p
	}
	host := strings.ToLower(first)
	if host == "index.docker.io" {
		host = imageref.DockerHub
	}
	if host == imageref.DockerHub && !strings.Contains(rest, "/") && !hasWildcard(namePart(rest)) {
		rest = "library/" + rest
	}
	return host + "/" + rest
}

// globMatch reports whether all of s matches pattern p, where '*' matches
// any run of bytes ('/' included) and '?' any one byte. Patterns and
// normalised images are ASCII, so bytes are characters. It backtracks only
// to the last '*', so it runs in O(len(p)*len(s)) at worst.
func globMatch(p, s string) bool {
	px, sx := 0, 0
	starP, starS := -1, 0
	for sx < len(s) {
		switch {
		case px < len(p) && p[px] == '*':
			starP, starS = px, sx
			px++
		case px < len(p) && (p[px] == '?' || p[px] == s[sx]):
			px++
			sx++
		case starP >= 0:
			// Let the last '*' swallow one more byte and retry.
			starS++
			px, sx = starP+1, starS
		default:
			return false
		}
	}
	for px < len(p) && p[px] == '*' {
		px++
	}
	return px == len(p)
}

// compiledPattern is a rule pattern prepared for matching.
type compiledPattern struct {
	raw   string
	norm  string   // normalizePattern(raw)
	comps []string // norm split on '/'
	prog  globProg // norm compiled, when it has classes or alternatives
	err   error    // what checkPattern found wrong, if anything
}

func compilePattern(raw string) compiledPattern {
	if err := checkPattern(raw); err != nil {
		return compiledPattern{raw: raw, err: err}
	}
	norm := normalizePattern(raw)
	c := compiledPattern{raw: raw, norm: norm, comps: strings.Split(norm, "/")}
	if strings.ContainsAny(norm, globSyntax) {
		prog, err := compileGlob(norm)
		if err != nil {
			return compiledPattern{raw: raw, err: fmt.Errorf("qualified as %q: %w", norm, err)}
		}
		c.prog = prog
	}
	return c
}

func (c compiledPattern) matchesAny(views []string) bool {
	for _, v := range views {
		if c.prog != nil && c.prog.match(v) || c.prog == nil && globMatch(c.norm, v) {
			return true
		}
	}
	return false
}
