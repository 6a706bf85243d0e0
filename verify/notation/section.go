package notation

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/notaryproject/notation-go/verifier/trustpolicy"
	"github.com/notaryproject/notation-go/verifier/truststore"

	"github.com/nri-image-verifier/nri-image-verifier/policy"
)

// Verification levels, as in the Notary Project trust policy. "skip"
// exists there too and is refused here: see checkRule.
const (
	LevelStrict     = "strict"
	LevelPermissive = "permissive"
	LevelAudit      = "audit"
)

// x509Subject is the prefix of a trusted identity that pins the signing
// certificate's subject, the only kind verified without a plugin.
const x509Subject = "x509.subject"

// Section is the notation validator's part of validators.Check: its trust
// roots' certificates, parsed as New parses them, and its rules'
// verification level, verifyTimestamp and trusted identities, the last
// checked by notation-go itself, so that a rule that loads is one
// notation's verifier accepts.
var Section = policy.Section{Type: policy.TypeNotation, Validator: checkValidator}

func checkValidator(e *policy.Errors, path string, v *policy.Validator) policy.RuleCheck {
	compile(e, path, v)
	return checkRule
}

// compile checks a notation validator's settings (at path) and parses its
// trust roots, by name. A root without certificates is left out: that is
// the policy's shape, which policy.Validate reports.
func compile(e *policy.Errors, path string, v *policy.Validator) map[string]*root {
	if v.Cert != "" {
		if _, err := parseCertificates(v.Cert); err != nil {
			e.Add(policy.Path(path, "cert"), "not PEM certificates: %v", err)
		}
	}
	roots := make(map[string]*root, len(v.TrustRoots))
	for i, tr := range v.TrustRoots {
		if strings.TrimSpace(tr.Cert) == "" {
			continue
		}
		r, field, err := newRoot(i, tr)
		if err != nil {
			e.Add(policy.Path(path, fmt.Sprintf("trustRoots[%d].%s", i, field)), "%v", err)
			continue
		}
		roots[tr.Name] = r
	}
	return roots
}

// levelOf is the rule's verification level: strict unless set.
func levelOf(w policy.With) string {
	if w.VerificationLevel == "" {
		return LevelStrict
	}
	return w.VerificationLevel
}

// verifyTimestampOf is the rule's verifyTimestamp: "always" unless set, as
// in the Notary Project trust policy.
func verifyTimestampOf(w policy.With) string {
	if w.VerifyTimestamp == "" {
		return string(trustpolicy.OptionAlways)
	}
	return w.VerifyTimestamp
}

// AnyIdentity is notation's trusted identity that accepts every signer a
// trust root's CA issued to.
const AnyIdentity = "*"

// identitiesOf is the rule's trusted identities: any signer under the
// selected roots ("*") unless set. That is what Connaisseur's notation
// validator always does (it has no such option), so its rules keep their
// meaning here; a load warning recommends pinning one (see policy).
func identitiesOf(w policy.With) []string {
	if len(w.TrustedIdentities) == 0 {
		return []string{AnyIdentity}
	}
	return w.TrustedIdentities
}

// rootCerts parses a notation trust root: cert, its trust store (CA
// certificates, or self-signed signing certificates), and tsCert, its
// timestamping authority roots (none if unset). The checks are those
// notation applies to the files of its trust store, so a root that loads
// here is one notation would use. On error, field says which of the two is
// wrong.
func rootCerts(r policy.TrustRoot) (certs, tsCerts []*x509.Certificate, field string, err error) {
	if certs, err = parseCertificates(r.Cert); err != nil {
		return nil, nil, "cert", err
	}
	if err := truststore.ValidateCertificates(certs); err != nil {
		return nil, nil, "cert", err
	}
	if strings.TrimSpace(r.TSCert) == "" {
		return certs, nil, "", nil
	}
	if tsCerts, err = parseCertificates(r.TSCert); err != nil {
		return nil, nil, "tsCert", err
	}
	for _, c := range tsCerts {
		// notation requires timestamping roots to be self-issued and
		// self-signed root certificates.
		if !bytes.Equal(c.RawSubject, c.RawIssuer) || c.CheckSignatureFrom(c) != nil {
			return nil, nil, "tsCert", fmt.Errorf("certificate with subject %q is not a self-signed root certificate", c.Subject)
		}
	}
	return certs, tsCerts, "", nil
}

// parseCertificates reads one or more PEM certificates and nothing else.
func parseCertificates(s string) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := []byte(s)
	for {
		block, more := pem.Decode(rest)
		if block == nil {
			break
		}
		rest = more
		if block.Type != "CERTIFICATE" {
			// Never echo the block: it may be a private key.
			return nil, fmt.Errorf("PEM block %d is a %q, want CERTIFICATE", len(certs)+1, block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, errors.New("holds data that is not a PEM certificate")
	}
	if len(certs) == 0 {
		return nil, errors.New(`no PEM certificate ("-----BEGIN CERTIFICATE-----")`)
	}
	return certs, nil
}

// checkRule checks a rule's notation options (at path, its with). The
// trust policy statement they make is checked by notation itself.
func checkRule(e *policy.Errors, path string, w policy.With) {
	switch w.VerificationLevel {
	case "", LevelStrict, LevelPermissive, LevelAudit:
	case trustpolicy.LevelSkip.Name:
		// Fail closed: "skip" admits any image, signed or not, and a rule
		// that verifies nothing should say so by its validator type.
		e.Add(policy.Path(path, "verificationLevel"), "%q is refused at the node: it would admit any image without checking a signature; use a static validator (approve: true) for images that need none, or %q to log failures", w.VerificationLevel, LevelAudit)
	default:
		e.Add(policy.Path(path, "verificationLevel"), "unknown level %q (want %q, %q or %q)", w.VerificationLevel, LevelStrict, LevelPermissive, LevelAudit)
	}
	switch trustpolicy.TimestampOption(w.VerifyTimestamp) {
	case "", trustpolicy.OptionAlways, trustpolicy.OptionAfterCertExpiry:
	default:
		e.Add(policy.Path(path, "verifyTimestamp"), "unknown value %q (want %q or %q)", w.VerifyTimestamp, trustpolicy.OptionAlways, trustpolicy.OptionAfterCertExpiry)
	}
	trustedIdentities(e, policy.Path(path, "trustedIdentities"), w.TrustedIdentities)
}

// trustedIdentities checks the pinned signer identities. None means "*"
// (identitiesOf), as in Connaisseur, with a warning (policy.Warnings).
func trustedIdentities(e *policy.Errors, path string, ids []string) {
	if len(ids) == 0 {
		return
	}
	ok := true
	for i, id := range ids {
		ipath := fmt.Sprintf("%s[%d]", path, i)
		prefix, _, found := strings.Cut(id, ":")
		switch {
		case strings.TrimSpace(id) == "":
			e.Add(ipath, "must not be empty")
		case id == AnyIdentity && len(ids) > 1:
			e.Add(ipath, `"*" accepts any identity and cannot be combined with others`)
		case id == AnyIdentity:
			continue
		case !found || prefix != x509Subject:
			e.Add(ipath, "%q: want %q followed by the certificate subject's distinguished name (other identity kinds need a notation plugin, which the node does not run)", id, x509Subject+": ")
		default:
			if err := identityStatement([]string{id}).Validate(); err != nil {
				e.Add(ipath, "%s", identityReason(err))
			} else {
				continue
			}
		}
		ok = false
	}
	if !ok {
		return
	}
	// Each identity is valid alone; notation also refuses identities that
	// overlap (one a subset of another).
	if err := identityStatement(ids).Validate(); err != nil {
		e.Add(path, "%s", identityReason(err))
	}
}

const checkStatementName = "rule"

// identityStatement is a one-statement trust policy with the identities,
// for notation's own checks of them.
func identityStatement(ids []string) *trustpolicy.Document {
	return &trustpolicy.Document{
		Version: "1.0",
		TrustPolicies: []trustpolicy.TrustPolicy{{
			Name:                  checkStatementName,
			RegistryScopes:        []string{"*"},
			SignatureVerification: trustpolicy.SignatureVerification{VerificationLevel: LevelStrict},
			TrustStores:           []string{string(truststore.TypeCA) + ":root"},
			TrustedIdentities:     ids,
		}},
	}
}

// identityReason is the reason at the end of err's chain: notation wraps
// it (a distinguished name that does not parse, say) in context that names
// its own trust policy file, which a reader of this policy has not got.
func identityReason(err error) string {
	for next := errors.Unwrap(err); next != nil; next = errors.Unwrap(err) {
		err = next
	}
	return strings.TrimPrefix(err.Error(), fmt.Sprintf("trust policy statement %q has ", checkStatementName))
}
