package policy

import (
	"fmt"
	"regexp/syntax"
)

// keylessRegexWarnings names each issuerRegex and subjectRegex whose
// meaning here differs from Connaisseur's. Here a regex must match the
// whole value (it is compiled as ^(?:re)$); cosign, and so Connaisseur,
// looks for it anywhere in the value. Connaisseur's own example
// `issuerRegex: github` therefore matches no real issuer here, and every
// image it was meant to admit is refused without a word. A regex that is
// anchored at both ends (^...$) or open at both (.*....*) means the same
// in both places and is not warned about.
func keylessRegexWarnings(at string, r TrustRoot) []string {
	if r.Keyless == nil {
		return nil
	}
	var ws []string
	for _, f := range []struct{ field, value string }{
		{"issuerRegex", r.Keyless.IssuerRegex},
		{"subjectRegex", r.Keyless.SubjectRegex},
	} {
		if f.value == "" || sameAnchoredOrNot(f.value) {
			continue
		}
		ws = append(ws, fmt.Sprintf("%s.keyless.%s %q: read anchored, as ^(?:%s)$, so it must match the whole value, "+
			"while Connaisseur (as cosign) matches it anywhere in the value; write %q to keep this meaning in both, "+
			"or %q for Connaisseur's", at, f.field, f.value, f.value, "^(?:"+f.value+")$", ".*(?:"+f.value+").*"))
	}
	return ws
}

// sameAnchoredOrNot says whether matching re against a whole value and
// looking for it anywhere in the value are the same: every top-level
// alternative starts with ^ or .* and ends with $ or .*. A regex that does
// not parse is not this warning's business (the validator reports it).
func sameAnchoredOrNot(re string) bool {
	tree, err := syntax.Parse(re, syntax.Perl)
	if err != nil {
		return true
	}
	return bothEnds(tree)
}

func bothEnds(re *syntax.Regexp) bool {
	switch re.Op {
	case syntax.OpCapture:
		return bothEnds(re.Sub[0])
	case syntax.OpAlternate:
		for _, sub := range re.Sub {
			if !bothEnds(sub) {
				return false
			}
		}
		return true
	}
	return openEnd(re, true) && openEnd(re, false)
}

// openEnd says whether re's start (or end) is pinned to the value's by ^
// (or $), or can swallow any prefix (or suffix) by .*, so that adding or
// removing an anchor there changes nothing.
func openEnd(re *syntax.Regexp, start bool) bool {
	switch re.Op {
	case syntax.OpBeginText, syntax.OpBeginLine:
		return start
	case syntax.OpEndText, syntax.OpEndLine:
		return !start
	case syntax.OpStar, syntax.OpPlus:
		return re.Sub[0].Op == syntax.OpAnyChar || re.Sub[0].Op == syntax.OpAnyCharNotNL
	case syntax.OpCapture:
		return openEnd(re.Sub[0], start)
	case syntax.OpConcat:
		if len(re.Sub) == 0 {
			return false
		}
		if start {
			return openEnd(re.Sub[0], start)
		}
		return openEnd(re.Sub[len(re.Sub)-1], start)
	case syntax.OpAlternate:
		for _, sub := range re.Sub {
			if !openEnd(sub, start) {
				return false
			}
		}
		return true
	}
	return false
}
