package verify

import (
	"fmt"
	"slices"
)

// Quorum is what a rule asks of the trust roots it selects: at least
// Threshold of Names signed, every one of Required among them. Validators
// with threshold semantics (cosign, notation) share it, so that the rule
// and the words that explain a shortfall are the same everywhere.
type Quorum struct {
	Names     []string // the selected roots, in policy order
	Threshold int
	Required  []string
}

// Count returns the selected roots that signed (signed[i] for Names[i])
// and the required roots that did not, and whether the quorum is met.
func (q Quorum) Count(signed []bool) (signers, missing []string, met bool) {
	for i, n := range q.Names {
		if signed[i] {
			signers = append(signers, n)
		}
	}
	for _, r := range q.Required {
		if !slices.Contains(signers, r) {
			missing = append(missing, r)
		}
	}
	return signers, missing, len(signers) >= q.Threshold && len(missing) == 0
}

// Shortfall says in one line why an unmet quorum is unmet, given that
// found signatures (what: "signature", "notation signature") were
// examined and signers signed; best is the most telling failure of those
// that verified with no selected root.
func (q Quorum) Shortfall(found int, what string, signers, missing []string, best string) string {
	switch {
	case len(signers) == 0:
		return fmt.Sprintf("%s found, none verified with %s: %s", Plural(found, what), RootsPhrase(q.Names), best)
	case len(signers) < q.Threshold:
		reason := fmt.Sprintf("threshold %d not met: signed by %v", q.Threshold, signers)
		if len(missing) > 0 {
			reason += "; " + missingPhrase(missing)
		}
		return reason
	default:
		return fmt.Sprintf("%s: signed by %v (threshold %d)", missingPhrase(missing), signers, q.Threshold)
	}
}

// RootsPhrase names one root or several.
func RootsPhrase(names []string) string {
	if len(names) == 1 {
		return fmt.Sprintf("trust root %q", names[0])
	}
	return fmt.Sprintf("trust roots %v", names)
}

func missingPhrase(missing []string) string {
	if len(missing) == 1 {
		return fmt.Sprintf("missing required root %q", missing[0])
	}
	return fmt.Sprintf("missing required roots %v", missing)
}

// Plural is "1 what" or "n whats".
func Plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
