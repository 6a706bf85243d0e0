package policy

import (
	"errors"
	"fmt"
	"strings"

	"github.com/nri-image-verifier/nri-image-verifier/imageref"
)

// ErrNoRule means no rule of the policy applies to the image (in that
// namespace). Like Connaisseur, the caller should deny such an image; a
// catch-all rule "*" or "*:*" changes that.
var ErrNoRule = errors.New("no policy rule matches")

// candidate is a rule that matches the image, with what precedence needs.
type candidate struct {
	index int
	rule  *Rule
	comps []string // the normalised pattern split on '/'
}

// Matcher picks the rule for an image: a policy's rule patterns, compiled
// (checked and normalised) once. Build one with NewMatcher to match many
// images, as the gate does; Policy.Match builds one per call. A Matcher is
// safe for concurrent use. It reads the policy it was built from: a rule
// whose pattern has changed since is compiled afresh, never matched with a
// stale pattern.
type Matcher struct {
	pol      *Policy
	patterns []compiledPattern
}

// NewMatcher compiles p's rule patterns. A pattern that does not compile
// (a policy that was not validated) is no error here: Match fails on it.
func NewMatcher(p *Policy) *Matcher {
	m := &Matcher{pol: p, patterns: make([]compiledPattern, len(p.Rules))}
	for i := range p.Rules {
		m.patterns[i] = compilePattern(p.Rules[i].Pattern)
	}
	return m
}

// Policy is the policy m matches with.
func (m *Matcher) Policy() *Policy { return m.pol }

// Match is NewMatcher(p).Match(image, namespace): for one lookup, such as
// `policy match`. To match many images, build a Matcher once.
func (p *Policy) Match(image, namespace string) (*Match, error) {
	return NewMatcher(p).Match(image, namespace)
}

// Match returns the rule that applies to image for a pod in namespace, with
// its validator and effective mode. The image is normalised first (see
// imageref.Normalize); a bare image ID is an error. Rules limited to other namespaces
// are skipped; with namespace "" (unknown) only unrestricted rules apply.
// Among the matching rules the most specific wins (see moreSpecific), and
// Match.Why says why it beat each of the others. No matching rule gives an
// error wrapping ErrNoRule.
func (m *Matcher) Match(image, namespace string) (*Match, error) {
	p := m.pol
	ref, err := imageref.Parse(image)
	if err != nil {
		return nil, fmt.Errorf("match: %w", err)
	}
	views := imageViews(ref.Repository, ref.Tag, ref.Digest)
	img := views[0]

	var cands []candidate
	for i := range p.Rules {
		pat := m.pattern(i)
		// An unvalidated policy may hold a bad pattern. Skipping it could
		// let a broader allow rule win over a deny rule, so fail instead.
		if pat.err != nil {
			return nil, fmt.Errorf("match: policy[%d].pattern: %w", i, pat.err)
		}
		r := &p.Rules[i]
		if r.appliesTo(namespace) && pat.matchesAny(views) {
			cands = append(cands, candidate{index: i, rule: r, comps: pat.comps})
		}
	}
	if len(cands) == 0 {
		if namespace == "" {
			return nil, fmt.Errorf("%w image %q", ErrNoRule, img)
		}
		return nil, fmt.Errorf("%w image %q in namespace %q", ErrNoRule, img, namespace)
	}

	imgComps := strings.Split(img, "/")
	best := cands[0]
	for _, c := range cands[1:] {
		if sign, _ := moreSpecific(c, best, imgComps); sign > 0 {
			best = c
		}
	}
	match := &Match{Rule: best.rule, Index: best.index, Image: img, Mode: p.modeOf(best.rule)}
	for _, c := range cands {
		if c.index != best.index {
			_, why := moreSpecific(best, c, imgComps)
			match.Why = append(match.Why, fmt.Sprintf("beats %q: %s", c.rule.Pattern, why))
		}
	}
	match.Validator = p.Validator(best.rule.validatorName())
	if match.Validator == nil {
		return nil, fmt.Errorf("match: policy[%d].validator: no validator named %q", best.index, best.rule.validatorName())
	}
	return match, nil
}

// pattern returns rule i's compiled pattern: the one NewMatcher prepared
// when the rule still has that pattern, otherwise (a policy changed in
// code since) compiled afresh, so that a stale pattern can never decide.
func (m *Matcher) pattern(i int) compiledPattern {
	if i < len(m.patterns) && m.patterns[i].raw == m.pol.Rules[i].Pattern {
		return m.patterns[i]
	}
	return compilePattern(m.pol.Rules[i].Pattern)
}

// imageViews lists the forms of a normalised image a pattern may match: the
// full reference first, then the same without the digest, without the tag,
// and without both. So "reg.io/app" matches reg.io/app with any tag or
// digest, and "reg.io/app:v1" matches "reg.io/app:v1@sha256:...", while a
// pattern is still anchored at both ends ("reg.io/app" does not match
// "reg.io/app-evil:v1").
func imageViews(repo, tag, digest string) []string {
	full := repo
	if tag != "" {
		full += ":" + tag
	}
	if digest != "" {
		full += "@" + digest
	}
	views := []string{full}
	if tag != "" && digest != "" {
		views = append(views, repo+":"+tag, repo+"@"+digest)
	}
	if tag != "" || digest != "" {
		views = append(views, repo)
	}
	return views
}

// moreSpecific compares how specifically rules a and b describe the image
// (split on '/' into img). It returns > 0 when a wins, < 0 when b wins, and
// the deciding criterion. Steps 1-3 and 5 are Connaisseur's, 4 is ours:
//  1. more path components;
//  2. from the left, the longer common prefix of a pattern component with
//     the image's component;
//  3. from the left, the longer component;
//  4. a rule restricted by namespaces over one that is not;
//  5. the rule later in the file: Connaisseur keeps the last of equally
//     specific rules, and a file must choose the same rule in both places.
//     Neither order is safer than the other; Warnings names such pairs.
func moreSpecific(a, b candidate, img []string) (int, reason) {
	if s := cmpInt(len(a.comps), len(b.comps)); s != 0 {
		return s, reason{kind: byComponents, a: len(a.comps), b: len(b.comps)}
	}
	for i := range a.comps {
		imgComp := ""
		if i < len(img) {
			imgComp = img[i]
		}
		pa, pb := commonPrefix(a.comps[i], imgComp), commonPrefix(b.comps[i], imgComp)
		if s := cmpInt(pa, pb); s != 0 {
			return s, reason{kind: byPrefix, comp: i, imgComp: imgComp, a: pa, b: pb}
		}
	}
	for i := range a.comps {
		if s := cmpInt(len(a.comps[i]), len(b.comps[i])); s != 0 {
			return s, reason{kind: byLength, comp: i, a: len(a.comps[i]), b: len(b.comps[i])}
		}
	}
	if ra, rb := len(a.rule.Namespaces) > 0, len(b.rule.Namespaces) > 0; ra != rb {
		if ra {
			return 1, reason{kind: byNamespaces}
		}
		return -1, reason{kind: byNamespaces}
	}
	if a.index > b.index {
		return 1, reason{kind: byOrder, a: a.index, b: b.index}
	}
	return -1, reason{kind: byOrder, a: a.index, b: b.index}
}

// reason is the criterion moreSpecific decided on, kept as numbers so that
// choosing the winner formats no strings.
type reason struct {
	kind    int
	comp    int // 0-based component index
	imgComp string
	a, b    int
}

const (
	byComponents = iota
	byPrefix
	byLength
	byNamespaces
	byOrder
)

// String phrases the reason from the winner's side.
func (r reason) String() string {
	hi, lo := max(r.a, r.b), min(r.a, r.b)
	switch r.kind {
	case byComponents:
		return fmt.Sprintf("more path components (%d > %d)", hi, lo)
	case byPrefix:
		return fmt.Sprintf("longer common prefix with image component %d %q (%d > %d)", r.comp+1, r.imgComp, hi, lo)
	case byLength:
		return fmt.Sprintf("longer path component %d (%d > %d characters)", r.comp+1, hi, lo)
	case byNamespaces:
		return "restricted by namespaces, the other rule is not"
	}
	return fmt.Sprintf("equally specific, and later in the file (policy[%d] after policy[%d])", hi, lo)
}

func cmpInt(a, b int) int {
	switch {
	case a > b:
		return 1
	case a < b:
		return -1
	}
	return 0
}

func commonPrefix(a, b string) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}
