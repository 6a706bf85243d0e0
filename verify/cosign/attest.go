package cosign

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/nri-image-verifier/nri-image-verifier/verify"
	"golang.org/x/sync/errgroup"
)

// How telling a note on a required attestation that was not met is; the
// reason shows the most telling one.
const (
	attRankKey       = iota + 1 // of the type (as annotated), but signed by no selected root
	attRankContent              // signed, but not a readable in-toto statement
	attRankDigest               // signed, of the type, but names another digest
	attRankCondition            // signed, of the type, for the digest: a condition does not hold
)

// need is one required attestation and what the search found for it.
type need struct {
	want *attestation
	met  bool
	note string
	rank int
}

func (n *need) fail(rank int, format string, args ...any) {
	if rank > n.rank {
		n.rank, n.note = rank, fmt.Sprintf(format, args...)
	}
}

// attestSearch is the attestation check of one verification.
type attestSearch struct {
	v     *Verifier
	repo  name.Repository
	roots []*trustRoot
	names []string
	with  policy.With
	needs []*need

	// found lists the predicate types of attestations that verified but
	// were not asked for, for the reason.
	found   []string
	skipped int
	err     error // transient: a referrer could not be fetched
}

// attested checks with.Attestations once the signatures have met the
// policy: every required attestation must be met by an attestation
// attached to one of cands (the candidate digests, top first) as a bundle
// referrer or in the legacy .att image, signed by one of the selected
// roots, naming that digest, of the predicate type, and passing every
// condition. It returns "" when all are met, else a one-line reason
// for the first that is not. An error means a referrer could not be
// fetched and the answer is open.
func (v *Verifier) attested(ctx context.Context, repo name.Repository, cands []string, roots []*trustRoot, names []string, with policy.With) (string, error) {
	s := &attestSearch{v: v, repo: repo, roots: roots, names: names, with: with}
	for i, a := range with.Attestations {
		c, err := v.attestations.get(a)
		if err != nil {
			// Check rejects these; a Policy built in code may not have.
			return fmt.Sprintf("attestations[%d]: %v", i, err), nil
		}
		s.needs = append(s.needs, &need{want: c})
	}
	// The top-level digest first: publishers attest what they push, the
	// index of a multi-arch image. A platform manifest only if needed.
	for _, cand := range cands {
		want, err := digestBytes(cand)
		if err != nil {
			continue // attestations bind sha256 digests: none can name cand
		}
		// Bundles (cosign v3), then, if still needed, the legacy
		// attestation tag (cosign v2).
		for _, look := range []func(context.Context, string, []byte){s.candidate, s.legacyCandidate} {
			look(ctx, cand, want)
			if s.unmet() == nil {
				return "", nil
			}
		}
	}
	n := s.unmet()
	if err := ctx.Err(); err != nil {
		// Out of time, perhaps in a condition: no verdict.
		return "", fmt.Errorf("checking attestations: %w", err)
	}
	if s.err != nil {
		// An attestation we could not fetch might have met it.
		return "", s.err
	}
	return s.reason(n, cands), nil
}

func (s *attestSearch) unmet() *need {
	for _, n := range s.needs {
		if !n.met {
			return n
		}
	}
	return nil
}

// wanted says whether some unmet requirement is of predicate type pt.
func (s *attestSearch) wanted(pt string) bool {
	for _, n := range s.needs {
		if !n.met && n.want.predicateType == pt {
			return true
		}
	}
	return false
}

// candidate examines the attestation bundles attached to cand as
// referrers. A registry error is kept in s.err: another place may still
// meet the requirements.
func (s *attestSearch) candidate(ctx context.Context, cand string, want []byte) {
	descs, err := s.v.referrers(ctx, s.repo, cand)
	if err != nil {
		s.fetchFailed(fmt.Errorf("looking up attestations of %s: %w", cand, err))
		return
	}
	// The annotation is the publisher's unsigned claim: trusting it to
	// skip a referrer only ever drops evidence (and keeps signatures and
	// unwanted SBOMs from using up the cap). Unannotated ones are examined.
	var todo []v1.Descriptor
	for _, d := range descs {
		if pt, ok := d.Annotations[predicateAnnotation]; ok && !s.wanted(pt) {
			continue
		}
		todo = append(todo, d)
	}
	s.each(ctx, cand, todo, "referrer", predicateAnnotation, func(d v1.Descriptor) (*examined, error) {
		return s.examine(ctx, cand, want, d)
	})
}

// each examines up to MaxSignatures of todo, four at a time, and applies
// what they came to in order. kind names what the descriptors are, for
// reasons; claimedBy is the annotation that holds a descriptor's claimed
// predicate type.
func (s *attestSearch) each(ctx context.Context, cand string, todo []v1.Descriptor, kind, claimedBy string, examine func(v1.Descriptor) (*examined, error)) {
	if limit := s.v.base.Reg.Limits().MaxSignatures; len(todo) > limit {
		s.skipped += len(todo) - limit
		todo = todo[:limit]
	}
	found := make([]*examined, len(todo))
	errs := make([]error, len(todo))
	var g errgroup.Group
	g.SetLimit(4)
	for i, d := range todo {
		g.Go(func() error {
			found[i], errs[i] = examine(d)
			return nil
		})
	}
	_ = g.Wait() // results are in found and errs
	for i, e := range found {
		if errs[i] != nil {
			s.fetchFailed(errs[i])
		}
		if e != nil {
			s.apply(ctx, cand, kind+" "+todo[i].Digest.String(), todo[i].Annotations[claimedBy], e)
		}
	}
}

func (s *attestSearch) fetchFailed(err error) {
	if s.err == nil {
		s.err = err
	}
}

// apply matches one examined attestation (ref: its referrer or layer, with
// the predicate type its annotation claims) against the unmet requirements.
func (s *attestSearch) apply(ctx context.Context, cand, ref, claimed string, e *examined) {
	used := false
	for _, n := range s.needs {
		pt := n.want.predicateType
		switch {
		case n.met:
		case e.rank == attRankKey:
			if claimed == pt {
				n.fail(attRankKey, "%s", e.note)
			}
		case e.statement == nil:
			if e.predicateType == pt || (e.predicateType == "" && claimed == pt) {
				n.fail(e.rank, "%s", e.note)
			}
		case e.predicateType != pt:
		default:
			used = true
			if err := n.want.check(ctx, *e.statement); err != nil {
				n.fail(attRankCondition, "attestation %s (%s of %s): %v", pt, ref, cand, err)
				continue
			}
			n.met = true
		}
	}
	// Image signatures are statements too; they are not what is missing.
	if e.statement != nil && !used && e.predicateType != signPredicateType && !slices.Contains(s.found, e.predicateType) {
		s.found = append(s.found, e.predicateType)
	}
}

// reason is the one line for a requirement that was not met.
func (s *attestSearch) reason(n *need, cands []string) string {
	pt := n.want.predicateType
	var r string
	switch n.rank {
	case attRankCondition, attRankDigest, attRankContent:
		r = n.note
	default:
		r = fmt.Sprintf("no attestation of type %s signed by %s for %s", pt, verify.RootsPhrase(s.names), strings.Join(cands, " or "))
		var more []string
		if n.rank == attRankKey {
			more = append(more, n.note)
		}
		if len(s.found) > 0 {
			more = append(more, "found signed attestations of type "+strings.Join(s.found, ", "))
		}
		if len(more) > 0 {
			r += " (" + strings.Join(more, "; ") + ")"
		}
	}
	if s.skipped > 0 {
		r += fmt.Sprintf(" (%s over the cap not examined)", verify.Plural(s.skipped, "more attestation"))
	}
	return r
}

// withAttestations turns the allowed signature verdict into the verdict
// of a rule with attestations.
func (v *Verifier) withAttestations(ctx context.Context, repo name.Repository, cands []string, roots []*trustRoot, names []string, with policy.With, signed verify.Verdict) (verify.Verdict, error) {
	reason, err := v.attested(ctx, repo, cands, roots, names, with)
	if err != nil {
		return verify.Verdict{}, v.base.Transient(err)
	}
	if reason != "" {
		return verify.Verdict{Reason: reason, Signers: signed.Signers}, nil
	}
	types := make([]string, len(with.Attestations))
	for i, a := range with.Attestations {
		types[i] = a.PredicateType
	}
	signed.Reason += "; attested: " + strings.Join(types, ", ")
	return signed, nil
}
