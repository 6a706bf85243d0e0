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
// Patterns are image references with two wildcards: '*' (any run of
// characters, '/' included, as in Connaisseur) and '?' (any one character).
func checkPattern(p string) error {
	if p == "" {
		return errors.New("must not be empty")
	}
	if len(p) > maxPatternLen {
		return fmt.Errorf("is %d characters long, at most %d allowed", len(p), maxPatternLen)
	}
	for _, c := range p {
		switch {
		case strings.ContainsRune("[]{}\\", c):
			// Connaisseur's glob library would read these as classes,
			// alternatives or escapes; refuse rather than match literally.
			return fmt.Errorf("character %q is glob syntax this version does not support; only * and ? are wildcards", c)
		case !isPatternChar(c):
			return fmt.Errorf("character %q cannot appear in an image reference", c)
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
		strings.ContainsRune("._-/:@+*?", c)
}

func hasWildcard(s string) bool { return strings.ContainsAny(s, "*?") }

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
	err   error    // what checkPattern found wrong, if anything
}

func compilePattern(raw string) compiledPattern {
	if err := checkPattern(raw); err != nil {
		return compiledPattern{raw: raw, err: err}
	}
	norm := normalizePattern(raw)
	return compiledPattern{raw: raw, norm: norm, comps: strings.Split(norm, "/")}
}

func (c compiledPattern) matchesAny(views []string) bool {
	for _, v := range views {
		if globMatch(c.norm, v) {
			return true
		}
	}
	return false
}
