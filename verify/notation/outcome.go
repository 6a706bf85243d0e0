package notation

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	notationgo "github.com/notaryproject/notation-go"
	"github.com/notaryproject/notation-go/verifier"
	"github.com/notaryproject/notation-go/verifier/trustpolicy"
	"github.com/nri-image-verifier/nri-image-verifier/verify"
)

// How telling a note on a failed signature is; the verdict's reason shows
// the most telling one (the signature that came closest).
const (
	rankMalformed = iota + 1 // not a usable notation signature
	rankIntegrity            // the envelope does not verify (tampered)
	rankChain                // the signer's chain leads to no selected root
	rankIdentity             // chains to a root, but the signer is not pinned
	rankExpired              // trusted signer, but expired or out of validity
	rankDigest               // trusted, but signed for another manifest
)

// finding is what one examined signature came to.
type finding struct {
	// signedBy are the indexes of the selected roots it counts for:
	// notation accepted it, authenticity included, and its chain holds
	// one of the root's certificates.
	signedBy []int
	// passed: notation accepted it at the rule's level (at audit, even
	// from an untrusted signer).
	passed bool
	// logged are the failures the level only logs.
	logged []string
	note   string
	rank   int
}

func failed(rank int, format string, args ...any) *finding {
	return &finding{rank: rank, note: fmt.Sprintf(format, args...)}
}

// judge turns notation's outcome for the signature in referrer ref into a
// finding.
func (c *check) judge(ref, cand string, o *notationgo.VerificationOutcome, err error) *finding {
	if o == nil {
		return failed(rankMalformed, "signature %s was not verified: %v", ref, err)
	}
	if o.EnvelopeContent == nil {
		// Integrity is checked first, and always enforced.
		return failed(rankIntegrity, "signature %s does not verify: %s", ref, clip(fmt.Sprint(err), maxNote))
	}
	chain := o.EnvelopeContent.SignerInfo.CertificateChain
	var anchored []int
	for i, r := range c.roots {
		if r.anchors(chain) {
			anchored = append(anchored, i)
		}
	}
	f := &finding{passed: err == nil}
	authNote, authRank := "", 0 // set when authenticity failed, enforced or not
	for _, r := range o.VerificationResults {
		if r.Error == nil {
			continue
		}
		rank, note := c.describe(r, chain, anchored)
		note = clip(note, maxNote)
		if r.Type == trustpolicy.TypeAuthenticity {
			authNote, authRank = note, rank
		}
		switch {
		case r.Action == trustpolicy.ActionLog:
			f.logged = append(f.logged, note)
		case f.rank == 0:
			f.rank, f.note = rank, fmt.Sprintf("signature %s: %s", ref, note)
		}
	}
	if err == nil {
		if authNote == "" {
			f.signedBy = anchored
		} else {
			// Accepted at level audit only: it counts for no root.
			f.rank, f.note = authRank, fmt.Sprintf("signature %s: %s", ref, authNote)
		}
		return f
	}
	if f.rank == 0 {
		if o.Error != nil && o.Error.Error() == "content descriptor mismatch" {
			f.rank, f.note = rankDigest, fmt.Sprintf("signature %s names %s, not %s", ref, signedTarget(o), cand)
		} else if attr, aerr := o.EnvelopeContent.SignerInfo.ExtendedAttribute(verifier.HeaderVerificationPlugin); aerr == nil {
			f.rank, f.note = rankMalformed, fmt.Sprintf("signature %s by %s needs verification plugin %v, and the node runs no notation plugins", ref, subjectOf(chain), attr.Value)
		} else {
			f.rank, f.note = rankMalformed, fmt.Sprintf("signature %s by %s was not verified: %v", ref, subjectOf(chain), err)
		}
	}
	f.note = clip(f.note, maxNote)
	return f
}

// describe words one failed check of notation's for an operator.
func (c *check) describe(r *notationgo.ValidationResult, chain []*x509.Certificate, anchored []int) (int, string) {
	switch r.Type {
	case trustpolicy.TypeAuthenticity:
		var inconclusive notationgo.VerificationInconclusiveError
		switch {
		case errors.As(r.Error, &inconclusive):
			return rankMalformed, r.Error.Error()
		case len(anchored) == 0:
			return rankChain, fmt.Sprintf("signer %s has a certificate chain that leads to no certificate of %s", subjectOf(chain), c.rootsPhrase())
		default:
			return rankIdentity, fmt.Sprintf("signer %s is not a trusted identity (pinned: %q)", subjectOf(chain), c.ids)
		}
	case trustpolicy.TypeIntegrity:
		return rankIntegrity, r.Error.Error()
	default:
		// expiry ("digital signature has expired on ..."),
		// authenticTimestamp ("... certificate ... was expired at ...")
		return rankExpired, fmt.Sprintf("%s: %v", r.Type, r.Error)
	}
}

func (c *check) rootsPhrase() string {
	names := make([]string, len(c.roots))
	for i, r := range c.roots {
		names[i] = r.name
	}
	return verify.RootsPhrase(names)
}

func subjectOf(chain []*x509.Certificate) string {
	if len(chain) == 0 {
		return "(no certificate)"
	}
	return fmt.Sprintf("%q", clip(chain[0].Subject.String(), maxSubject))
}

// signedTarget describes the manifest a (verified) payload names.
func signedTarget(o *notationgo.VerificationOutcome) string {
	var p struct {
		TargetArtifact struct {
			MediaType string `json:"mediaType"`
			Digest    string `json:"digest"`
			Size      int64  `json:"size"`
		} `json:"targetArtifact"`
	}
	if err := json.Unmarshal(o.EnvelopeContent.Payload.Content, &p); err != nil {
		return "another manifest"
	}
	t := p.TargetArtifact
	return fmt.Sprintf("%s (%s, %d bytes)", t.Digest, t.MediaType, t.Size)
}

// maxSubject and maxNote bound what of a signature ends up in refusals and
// audit lines: certificate subjects and envelope errors come from whoever
// pushed it. A subject is cut first, so that the note still says what is
// wrong with it.
const (
	maxSubject = 256
	maxNote    = 1024
)

// clip cuts s to at most n bytes on a rune boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + fmt.Sprintf("... (%d more bytes)", len(s)-cut)
}
