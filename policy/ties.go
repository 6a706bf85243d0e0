package policy

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// tieWarnings names the rules that are exactly as specific as an earlier
// rule on every image both match, so that precedence falls to file order
// (the later wins, as in Connaisseur). Such a pair is usually a mistake:
// a rule copied and changed in one place only, or "redis:*" beside
// "docker.io/library/redis:*". Rules that tie on some images only (say
// "*/a/*" and "*/b/*" on "r/x/a/b/c") are decided the same way, but not
// warned about: spotting them would need every image both may match.
func (p *Policy) tieWarnings() []string {
	var ws []string
	earlier := map[string][]int{} // tieKey -> rule indexes
	for i := range p.Rules {
		pat := compilePattern(p.Rules[i].Pattern)
		if pat.err != nil {
			continue
		}
		key := tieKey(pat.comps)
		for _, j := range earlier[key] {
			if !p.Rules[i].overlapsNamespaces(&p.Rules[j]) {
				continue
			}
			ws = append(ws, fmt.Sprintf("policy[%d] (%s).pattern: exactly as specific as policy[%d] (%s) on every image both match, "+
				"so this rule, the later one, applies to them (as in Connaisseur); remove one, or make one pattern more specific",
				i, p.Rules[i].Pattern, j, p.Rules[j].Pattern))
		}
		earlier[key] = append(earlier[key], i)
	}
	return ws
}

// tieKey is what moreSpecific's steps 1-3 see of a pattern, whatever the
// image: the number of components, each component's length, and each
// component's literal head, the text before its first wildcard. Past the
// head, a pattern character is a wildcard or follows one, and a common
// prefix with an image component stops there at the latest (images hold
// no wildcard characters), so two patterns with one key are equally
// specific on every image both match.
func tieKey(comps []string) string {
	var b strings.Builder
	for _, c := range comps {
		head := c
		if i := strings.IndexAny(c, globMeta); i >= 0 {
			head = c[:i]
		}
		b.WriteString(strconv.Itoa(len(c)))
		b.WriteByte(' ')
		b.WriteString(head)
		b.WriteByte('/') // never in a component
	}
	return b.String()
}

// overlapsNamespaces says whether r and o can both apply to one pod and
// are alike for precedence step 4: both unrestricted, or both restricted
// with a namespace in common.
func (r *Rule) overlapsNamespaces(o *Rule) bool {
	if len(r.Namespaces) == 0 || len(o.Namespaces) == 0 {
		return len(r.Namespaces) == len(o.Namespaces)
	}
	for _, ns := range r.Namespaces {
		if slices.Contains(o.Namespaces, ns) {
			return true
		}
	}
	return false
}
