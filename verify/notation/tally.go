package notation

import (
	"fmt"
	"slices"
	"strings"

	"github.com/nri-image-verifier/nri-image-verifier/verify"
)

// result is the lookup of one candidate digest.
type result struct {
	findings []finding
	skipped  int      // signatures not examined: over the cap
	absent   []string // candidates whose manifest the registry does not have
	err      error    // transient: the lookup is incomplete
}

// tally gathers the results of one verification.
type tally struct {
	level   string
	signed  []bool // per selected root
	found   int
	best    finding
	skipped int
	absent  []string
	err     error
	// logged are the failures the level let pass on signatures that count
	// for a root; audited is the first signature notation accepted at the
	// rule's level, which at level audit admits the image even when the
	// roots' threshold is not met (authenticity is only logged there).
	logged  []string
	audited *finding
}

func (t *tally) add(r result) {
	for i := range r.findings {
		f := &r.findings[i]
		t.found++
		for _, j := range f.signedBy {
			t.signed[j] = true
		}
		if len(f.signedBy) > 0 {
			t.logged = append(t.logged, f.logged...)
		}
		if f.passed && t.audited == nil {
			t.audited = f
		}
		if len(f.signedBy) == 0 && f.rank > t.best.rank {
			t.best = *f
		}
	}
	t.skipped += r.skipped
	t.absent = append(t.absent, r.absent...)
	if r.err != nil && t.err == nil {
		t.err = r.err
	}
}

// verdict applies the threshold and the required roots to what was found,
// and at level audit admits what notation accepted anyway, saying so.
func (t *tally) verdict(cands, names []string, threshold int, required []string) verify.Verdict {
	q := verify.Quorum{Names: names, Threshold: threshold, Required: required}
	signers, missing, met := q.Count(t.signed)
	if met {
		reason := fmt.Sprintf("signed by trust roots %v (threshold %d, level %s)", signers, threshold, t.level)
		if len(t.logged) > 0 {
			reason += fmt.Sprintf("; logged, not enforced at level %s: %s", t.level, notes(dedup(t.logged)))
		}
		return verify.Verdict{Allowed: true, Signers: signers, Reason: reason}
	}
	reason := noSignature(cands, t.absent)
	if t.found > 0 {
		reason = q.Shortfall(t.found, "notation signature", signers, missing, t.best.note)
	}
	if t.skipped > 0 {
		reason += fmt.Sprintf(" (%s over the cap not examined)", verify.Plural(t.skipped, "more signature"))
	}
	if t.level == LevelAudit && t.audited != nil {
		// The Notary Project's audit level: integrity and the binding to
		// the digest are enforced, authenticity and expiry only logged.
		reason = "admitted at verification level audit, which only logs: " + reason
		var also []string
		for _, n := range dedup(append(slices.Clone(t.audited.logged), t.logged...)) {
			if !strings.Contains(reason, n) {
				also = append(also, n)
			}
		}
		if len(also) > 0 {
			reason += "; also logged: " + notes(also)
		}
		return verify.Verdict{Allowed: true, Signers: signers, Reason: reason}
	}
	return verify.Verdict{Reason: reason, Signers: signers}
}

func noSignature(cands, absent []string) string {
	var why string
	if len(absent) > 0 {
		why = fmt.Sprintf("; the registry does not have manifest %s", strings.Join(absent, ", "))
	}
	return fmt.Sprintf("no notation signature found for %s (looked for OCI referrers of artifact type %s%s)", strings.Join(cands, " or "), ArtifactType, why)
}

func dedup(notes []string) []string {
	var out []string
	for _, n := range notes {
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// maxNotes bounds how many logged failures a reason lists.
const maxNotes = 3

func notes(ns []string) string {
	if len(ns) <= maxNotes {
		return strings.Join(ns, "; ")
	}
	return fmt.Sprintf("%s; and %d more", strings.Join(ns[:maxNotes], "; "), len(ns)-maxNotes)
}
