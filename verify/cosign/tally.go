package cosign

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/nri-image-verifier/nri-image-verifier/verify"
)

// How telling a note on a failed signature is; the verdict's reason shows
// the most telling one.
const (
	rankMalformed = iota + 1 // not a readable cosign signature
	rankKey                  // does not verify with any selected key
	rankContent              // verifies, but the signed content is not a cosign image signature
	rankDigest               // verifies, but names another digest
)

// finding is what one examined signature came to.
type finding struct {
	signedBy []int // indexes of the selected roots it counts for
	note     string
	rank     int
}

func failed(rank int, format string, args ...any) finding {
	return finding{rank: rank, note: fmt.Sprintf(format, args...)}
}

// result is one lookup: one candidate digest, one format.
type result struct {
	from     where // the lookup
	findings []finding
	skipped  int   // signatures not examined: over the cap
	err      error // transient: the lookup is incomplete
}

// tally gathers the results of all lookups of one verification.
type tally struct {
	mu      sync.Mutex
	signed  []bool // per selected root
	found   int
	best    finding
	skipped int
	err     error
	// from is where the signatures that verified for some root were.
	from where
}

func newTally(roots int) *tally { return &tally{signed: make([]bool, roots)} }

func (t *tally) add(r result) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, f := range r.findings {
		t.found++
		for _, i := range f.signedBy {
			t.signed[i] = true
		}
		if len(f.signedBy) > 0 {
			t.from |= r.from
		}
		if len(f.signedBy) == 0 && f.rank > t.best.rank {
			t.best = f
		}
	}
	t.skipped += r.skipped
	if r.err != nil && t.err == nil {
		t.err = r.err
	}
}

// met says whether the signatures verified so far meet the threshold and
// the required roots (names are the selected roots, as in verdict).
func (t *tally) met(threshold int, required, names []string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, s := range t.signed {
		if s {
			n++
		}
	}
	if n < threshold {
		return false
	}
	for _, r := range required {
		i := slices.Index(names, r)
		if i < 0 || !t.signed[i] {
			return false
		}
	}
	return true
}

// contributed is where the signatures that verified were found.
func (t *tally) contributed() where {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.from
}

// verdict applies the threshold and the required roots to what was found.
func (t *tally) verdict(cands, names []string, threshold int, required []string) verify.Verdict {
	t.mu.Lock()
	defer t.mu.Unlock()
	q := verify.Quorum{Names: names, Threshold: threshold, Required: required}
	signers, missing, met := q.Count(t.signed)
	if met {
		return verify.Verdict{
			Allowed: true,
			Signers: signers,
			Reason:  fmt.Sprintf("signed by trust roots %v (threshold %d)", signers, threshold),
		}
	}
	reason := noSignature(cands)
	if t.found > 0 {
		reason = q.Shortfall(t.found, "signature", signers, missing, t.best.note)
	}
	if t.skipped > 0 {
		reason += fmt.Sprintf(" (%s over the cap not examined)", verify.Plural(t.skipped, "more signature"))
	}
	return verify.Verdict{Reason: reason, Signers: signers}
}

func noSignature(cands []string) string {
	tags := make([]string, len(cands))
	for i, c := range cands {
		tags[i] = strings.Replace(c, ":", "-", 1) + ".sig"
	}
	if len(cands) == 1 {
		return fmt.Sprintf("no cosign signature found for %s (looked for tag %s and OCI referrers)", cands[0], tags[0])
	}
	return fmt.Sprintf("no cosign signature found for %s (looked for tags %s and OCI referrers of each)",
		strings.Join(cands, " or "), strings.Join(tags, ", "))
}
