package cosign

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	sgverify "github.com/sigstore/sigstore-go/pkg/verify"
)

// The in-toto statement types an attestation may have: v1, and v0.1,
// which cosign attest still writes.
var statementTypes = []string{"https://in-toto.io/Statement/v1", "https://in-toto.io/Statement/v0.1"}

// examined is what one attestation referrer came to.
type examined struct {
	// predicateType is the signed predicate type; empty when the bundle
	// did not verify or could not be read.
	predicateType string
	// statement is set when the bundle verified with a selected root for
	// the candidate digest and holds a readable statement. Its Predicate
	// is decoded only when some requirement asks for its type.
	statement *statement
	rank      int
	note      string
}

func unusable(rank int, format string, args ...any) *examined {
	return &examined{rank: rank, note: fmt.Sprintf(format, args...)}
}

// examine fetches and verifies one referrer of cand. Nil, nil: it is not
// a Sigstore bundle after all.
func (s *attestSearch) examine(ctx context.Context, cand string, want []byte, d v1.Descriptor) (*examined, error) {
	// An attestation's statement can be large (an SBOM): the blob cap.
	b, problem, err := s.v.fetchBundle(ctx, s.repo, cand, d, s.v.base.Reg.Blob)
	if b == nil {
		if problem != "" {
			return unusable(attRankContent, "%s", problem), nil
		}
		return nil, err
	}
	return s.verified(b, cand, "referrer "+d.Digest.String(), want), nil
}

// verified checks b with the selected roots, bound to cand (whose sha256
// is want), and reads its statement. ref names where b came from.
func (s *attestSearch) verified(b *bundle.Bundle, cand, ref string, want []byte) *examined {
	if b.GetDsseEnvelope() == nil {
		return unusable(attRankContent, "%s of %s holds a message signature, not an attestation", ref, cand)
	}
	var firstErr error
	for _, r := range s.roots {
		res, err := r.verify(b, s.with, sgverify.WithArtifactDigest("sha256", want))
		if err == nil {
			return s.read(b, res, cand, ref)
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	// Tell a genuine attestation of another digest (a replay) from a bad
	// one, for the reason. Either way it does not count.
	for _, r := range s.roots {
		if alone, err := r.verify(b, s.with, sgverify.WithoutArtifactUnsafe()); err == nil && alone.Statement != nil {
			pt := alone.Statement.GetPredicateType()
			return &examined{predicateType: pt, rank: attRankDigest,
				note: fmt.Sprintf("attestation %s (%s of %s) names digest %s, not %s", pt, ref, cand, subjectDigests(alone.Statement.GetSubject()), cand)}
		}
	}
	return unusable(attRankKey, "%s does not verify: %v", ref, firstErr)
}

// read takes the statement from the verified envelope. The verifier does
// not decode the predicate (WithoutStatementPredicate), so it is read here
// from the very payload whose signature was checked.
// ref names the referrer or layer it came from, for reasons.
func (s *attestSearch) read(b *bundle.Bundle, res *sgverify.VerificationResult, cand, ref string) *examined {
	var raw struct {
		Type          string `json:"_type"`
		PredicateType string `json:"predicateType"`
		Subject       []struct {
			Name   string            `json:"name"`
			Digest map[string]string `json:"digest"`
		} `json:"subject"`
		Predicate json.RawMessage `json:"predicate"`
	}
	if err := json.Unmarshal(b.GetDsseEnvelope().GetPayload(), &raw); err != nil {
		return unusable(attRankContent, "attestation in %s of %s is not an in-toto statement: %v", ref, cand, err)
	}
	pt := raw.PredicateType
	if res.Statement == nil || res.Statement.GetPredicateType() != pt {
		return unusable(attRankContent, "attestation in %s of %s: the verifier read another statement", ref, cand)
	}
	if !slices.Contains(statementTypes, raw.Type) {
		return &examined{predicateType: pt, rank: attRankContent,
			note: fmt.Sprintf("attestation %s (%s of %s) has statement type %q, not an in-toto statement", pt, ref, cand, raw.Type)}
	}
	st := &statement{PredicateType: pt}
	if !s.wanted(pt) {
		return &examined{predicateType: pt, statement: st}
	}
	for _, sub := range raw.Subject {
		st.Subject = append(st.Subject, statementSubject{Name: sub.Name, Digest: sub.Digest})
	}
	if len(raw.Predicate) > 0 {
		if err := json.Unmarshal(raw.Predicate, &st.Predicate); err != nil {
			return &examined{predicateType: pt, rank: attRankContent,
				note: fmt.Sprintf("attestation %s (%s of %s): predicate is not JSON: %v", pt, ref, cand, err)}
		}
	}
	return &examined{predicateType: pt, statement: st}
}

// digestBytes is the hex of a sha256 digest, decoded.
func digestBytes(d string) ([]byte, error) {
	h, ok := strings.CutPrefix(d, "sha256:")
	if !ok {
		return nil, fmt.Errorf("digest %s is not a sha256 digest", d)
	}
	return hex.DecodeString(h)
}
