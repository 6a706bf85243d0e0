package cosign

import (
	"crypto/x509"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/sigstore/sigstore-go/pkg/fulcio/certificate"
	sgverify "github.com/sigstore/sigstore-go/pkg/verify"
)

// keylessRoot verifies signatures made with a Fulcio certificate: the
// certificate chains to the validator's Fulcio CAs at a trusted time, its
// OIDC issuer and subject match the root's identity, and, as the rule
// asks, a Rekor entry for this very signature verifies with the Rekor key
// and an SCT embedded in the certificate verifies with the CT log key.
// sigstore-go does every check; this type only picks its options and
// explains its errors.
type keylessRoot struct {
	id       *identity
	identity sgverify.CertificateIdentity
	// verifiers is indexed [tlog][sct], the rule's two switches.
	verifiers [2][2]*sgverify.Verifier
}

// newKeylessRoot builds the keyless root called name: identity k, as
// compile made it, checked with the validator's material m.
func newKeylessRoot(name string, k *identity, m *material) (*keylessRoot, error) {
	if m == nil || !m.HasFulcio {
		return nil, fmt.Errorf("trust root %q: keyless, but the validator has no Fulcio CA certificates", name)
	}
	if (k.Issuer == "") == (k.issuerRE == nil) || (k.Subject == "") == (k.subjectRE == nil) {
		// compile makes exactly one of each; anything else would match
		// nothing, or anything.
		return nil, fmt.Errorf("trust root %q: keyless identity needs exactly one of issuer/issuerRegex and of subject/subjectRegex", name)
	}
	// The regexes given to sigstore-go are the anchored ones compile made;
	// sigstore-go itself does not anchor.
	id, err := sgverify.NewShortCertificateIdentity(k.Issuer, reString(k.issuerRE), k.Subject, reString(k.subjectRE))
	if err != nil {
		return nil, fmt.Errorf("trust root %q: %w", name, err)
	}
	kr := &keylessRoot{id: k, identity: id}
	for tlog := range 2 {
		for sct := range 2 {
			// A Rekor entry's integrated time, signed in its SET, is the
			// time the certificate must have been valid at. Without the
			// log there is no trusted time but now, so an expired
			// certificate is refused.
			opts := []sgverify.VerifierOption{sgverify.WithCurrentTime()}
			if tlog == 1 {
				opts = []sgverify.VerifierOption{sgverify.WithTransparencyLog(1), sgverify.WithObserverTimestamps(1)}
			}
			if sct == 1 {
				opts = append(opts, sgverify.WithSignedCertificateTimestamps(1))
			}
			// Only the predicate type is read, so the predicate is not decoded.
			opts = append(opts, sgverify.WithoutStatementPredicate())
			v, err := sgverify.NewVerifier(m.Trusted, opts...)
			if err != nil {
				return nil, fmt.Errorf("trust root %q: %w", name, err)
			}
			kr.verifiers[tlog][sct] = v
		}
	}
	return kr, nil
}

func reString(re *regexp.Regexp) string {
	if re == nil {
		return ""
	}
	return re.String()
}

// leafOf is e's signing certificate, or nil.
func leafOf(e sgverify.SignedEntity) *x509.Certificate {
	vc, err := e.VerificationContent()
	if err != nil || vc == nil {
		return nil
	}
	return vc.Certificate()
}

// verify checks e as with asks (see keylessChecks).
func (k *keylessRoot) verify(e sgverify.SignedEntity, with policy.With, artifact sgverify.ArtifactPolicyOption) (*sgverify.VerificationResult, error) {
	if leafOf(e) == nil {
		return nil, errors.New("signed with a key, not a Fulcio certificate: not a keyless signature")
	}
	tlog, sct := keylessChecks(with)
	res, err := k.verifiers[b2i(tlog)][b2i(sct)].Verify(e, sgverify.NewPolicy(artifact, sgverify.WithCertificateIdentity(k.identity)))
	if err != nil {
		return nil, k.explain(e, tlog, err)
	}
	return res, nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// explain turns sigstore-go's error into one an operator can act on: which
// check failed, against what. sigstore-go names the step that failed in
// its wrapping messages, which is what is read here; the original error
// is kept at the end for the detail.
func (k *keylessRoot) explain(e sgverify.SignedEntity, tlog bool, err error) error {
	var noID *sgverify.ErrNoMatchingCertificateIdentity
	if errors.As(err, &noID) {
		if msg := k.mismatch(e); msg != "" {
			return errors.New(msg)
		}
		return err
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "failed to verify log inclusion"):
		return fmt.Errorf("no transparency-log entry verified with the configured Rekor key (%w)", err)
	case strings.Contains(msg, "failed to verify timestamps"):
		return fmt.Errorf("no trusted timestamp for the certificate (%w)", err)
	case strings.Contains(msg, "failed to verify leaf certificate"):
		if leaf := leafOf(e); leaf != nil && !tlog && time.Now().After(leaf.NotAfter) {
			return fmt.Errorf("certificate expired at %s and no trusted timestamp (verifyInTransparencyLog is off)", leaf.NotAfter.UTC().Format(time.RFC3339))
		}
		return fmt.Errorf("certificate does not chain to the configured Fulcio CA at the signing time (%w)", err)
	case strings.Contains(msg, "failed to verify signed certificate timestamp"):
		return fmt.Errorf("no SCT in the certificate verified with the configured CT log key (%w)", err)
	}
	return err
}

// mismatch says which part of the identity the signing certificate fails.
func (k *keylessRoot) mismatch(e sgverify.SignedEntity) string {
	leaf := leafOf(e)
	if leaf == nil {
		return ""
	}
	s, err := certificate.SummarizeCertificate(leaf)
	if err != nil {
		return fmt.Sprintf("certificate identity unreadable: %v", err)
	}
	if m := partMismatch("issuer", s.Issuer, k.id.Issuer, k.id.IssuerRegex, k.id.issuerRE); m != "" {
		return m
	}
	return partMismatch("subject", s.SubjectAlternativeName, k.id.Subject, k.id.SubjectRegex, k.id.subjectRE)
}

func partMismatch(what, got, exact, reSrc string, re *regexp.Regexp) string {
	switch {
	case exact != "" && got != exact:
		return fmt.Sprintf("certificate %s %q does not match %q", what, got, exact)
	case exact == "" && re != nil && !re.MatchString(got):
		return fmt.Sprintf("certificate %s %q does not match regex %q", what, got, reSrc)
	}
	return ""
}
