package policy

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/notaryproject/notation-go/verifier/trustpolicy"
	"github.com/notaryproject/notation-go/verifier/truststore"
)

// Notation verification levels, as in the Notary Project trust policy.
// "skip" exists there too and is refused here: see notationWith.
const (
	NotationStrict     = "strict"
	NotationPermissive = "permissive"
	NotationAudit      = "audit"
)

// NotationX509Subject is the prefix of a trusted identity that pins the
// signing certificate's subject, the only kind verified without a plugin.
const NotationX509Subject = "x509.subject"

// NotationLevel is the rule's verification level: strict unless set.
func (w With) NotationLevel() string {
	if w.VerificationLevel == "" {
		return NotationStrict
	}
	return w.VerificationLevel
}

// NotationVerifyTimestamp is the rule's verifyTimestamp: "always" unless
// set, as in the Notary Project trust policy.
func (w With) NotationVerifyTimestamp() string {
	if w.VerifyTimestamp == "" {
		return string(trustpolicy.OptionAlways)
	}
	return w.VerifyTimestamp
}

// NotationCerts parses a notation trust root: cert, its trust store (CA
// certificates, or self-signed signing certificates), and tsCert, its
// timestamping authority roots (none if unset). The checks are those
// notation applies to the files of its trust store, so a root that loads
// here is one notation would use.
func NotationCerts(r TrustRoot) (certs, tsCerts []*x509.Certificate, err error) {
	if certs, err = parseCertificates(r.Cert); err != nil {
		return nil, nil, fmt.Errorf("cert: %w", err)
	}
	if err := truststore.ValidateCertificates(certs); err != nil {
		return nil, nil, fmt.Errorf("cert: %w", err)
	}
	if strings.TrimSpace(r.TSCert) == "" {
		return certs, nil, nil
	}
	if tsCerts, err = parseCertificates(r.TSCert); err != nil {
		return nil, nil, fmt.Errorf("tsCert: %w", err)
	}
	for _, c := range tsCerts {
		// notation requires timestamping roots to be self-issued and
		// self-signed root certificates.
		if !bytes.Equal(c.RawSubject, c.RawIssuer) || c.CheckSignatureFrom(c) != nil {
			return nil, nil, fmt.Errorf("tsCert: certificate with subject %q is not a self-signed root certificate", c.Subject)
		}
	}
	return certs, tsCerts, nil
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

// notation checks a notation (Notary Project v2) validator: its trust roots
// are X.509 certificates (cert, and tsCert for timestamping), never keys.
func (c *checker) notation(path string, v *Validator) {
	if v.Approve != nil {
		c.Add(path+".approve", "only static validators take approve")
	}
	if v.Host != nil {
		c.Add(path+".host", "a notation validator takes no host (signatures are read from the image's registry)")
	}
	if v.Cert != "" {
		if _, err := parseCertificates(v.Cert); err != nil {
			c.Add(path+".cert", "not PEM certificates: %v", err)
		}
	}
	if len(v.TrustRoots) == 0 {
		c.Add(path+".trustRoots", "a notation validator needs at least one trust root")
	}
	firstByName := map[string]int{}
	for i := range v.TrustRoots {
		rpath := fmt.Sprintf("%s.trustRoots[%d]", path, i)
		r := &v.TrustRoots[i]
		r.PublicKey = nil // notation roots are certificates; never keep a key
		if r.Name == "" {
			c.Add(rpath+".name", "must not be empty")
		} else if j, dup := firstByName[r.Name]; dup {
			c.Add(rpath+".name", "duplicate trust root name %q (also trustRoots[%d])", r.Name, j)
		} else {
			firstByName[r.Name] = i
		}
		if r.Key != "" {
			c.Add(rpath+".key", "a notation trust root is X.509 certificates (cert), not a public key")
		}
		if r.Keyless != nil {
			c.Add(rpath+".keyless", "a notation trust root is X.509 certificates (cert), not a keyless identity")
		}
		if strings.TrimSpace(r.Cert) == "" {
			c.Add(rpath+".cert", "required (PEM CA certificates, or a self-signed signing certificate)")
			continue
		}
		if _, _, err := NotationCerts(*r); err != nil {
			field, msg, _ := strings.Cut(err.Error(), ": ")
			c.Add(rpath+"."+field, "%s", msg)
		}
	}
}

// notationWith checks a rule's options for a notation validator. The trust
// policy statement they make is checked by notation itself, so that a rule
// that loads is one notation's verifier accepts.
func (c *checker) notationWith(path string, w With, v *Validator) {
	// trustRoot, threshold and required mean what they mean for cosign.
	c.cosignWith(path, w, v)
	if w.VerifyInTransparencyLog != nil || w.VerifySCT != nil {
		c.Add(path, "verifyInTransparencyLog and verifySCT are for cosign validators")
	}
	switch w.VerificationLevel {
	case "", NotationStrict, NotationPermissive, NotationAudit:
	case trustpolicy.LevelSkip.Name:
		// Fail closed: "skip" admits any image, signed or not, and a rule
		// that verifies nothing should say so by its validator type.
		c.Add(path+".verificationLevel", "%q is refused at the node: it would admit any image without checking a signature; use a static validator (approve: true) for images that need none, or %q to log failures", w.VerificationLevel, NotationAudit)
	default:
		c.Add(path+".verificationLevel", "unknown level %q (want %q, %q or %q)", w.VerificationLevel, NotationStrict, NotationPermissive, NotationAudit)
	}
	switch trustpolicy.TimestampOption(w.VerifyTimestamp) {
	case "", trustpolicy.OptionAlways, trustpolicy.OptionAfterCertExpiry:
	default:
		c.Add(path+".verifyTimestamp", "unknown value %q (want %q or %q)", w.VerifyTimestamp, trustpolicy.OptionAlways, trustpolicy.OptionAfterCertExpiry)
	}
	c.trustedIdentities(path+".trustedIdentities", w.TrustedIdentities)
}

// trustedIdentities checks the pinned signer identities. They are required:
// pinning who may sign is the point of this validator, and "*" (any
// certificate the roots issued) must be written out to be had.
func (c *checker) trustedIdentities(path string, ids []string) {
	if len(ids) == 0 {
		c.Add(path, `required: pin the signing certificate's subject, e.g. "x509.subject: C=US, ST=WA, O=Example, CN=release"; write "*" to accept any certificate the trust roots issued`)
		return
	}
	ok := true
	for i, id := range ids {
		ipath := fmt.Sprintf("%s[%d]", path, i)
		prefix, _, found := strings.Cut(id, ":")
		switch {
		case strings.TrimSpace(id) == "":
			c.Add(ipath, "must not be empty")
		case id == "*" && len(ids) > 1:
			c.Add(ipath, `"*" accepts any identity and cannot be combined with others`)
		case id == "*":
			continue
		case !found || prefix != NotationX509Subject:
			c.Add(ipath, "%q: want %q followed by the certificate subject's distinguished name (other identity kinds need a notation plugin, which the node does not run)", id, NotationX509Subject+": ")
		default:
			if err := notationStatement([]string{id}).Validate(); err != nil {
				c.Add(ipath, "%s", notationReason(err))
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
	if err := notationStatement(ids).Validate(); err != nil {
		c.Add(path, "%s", notationReason(err))
	}
}

const statementName = "rule"

// notationStatement is a one-statement trust policy with the identities,
// for notation's own checks of them.
func notationStatement(ids []string) *trustpolicy.Document {
	return &trustpolicy.Document{
		Version: "1.0",
		TrustPolicies: []trustpolicy.TrustPolicy{{
			Name:                  statementName,
			RegistryScopes:        []string{"*"},
			SignatureVerification: trustpolicy.SignatureVerification{VerificationLevel: NotationStrict},
			TrustStores:           []string{string(truststore.TypeCA) + ":root"},
			TrustedIdentities:     ids,
		}},
	}
}

// notationReason is the reason at the end of err's chain: notation wraps
// it (a distinguished name that does not parse, say) in context that names
// its own trust policy file, which a reader of this policy has not got.
func notationReason(err error) string {
	for next := errors.Unwrap(err); next != nil; next = errors.Unwrap(err) {
		err = next
	}
	return strings.TrimPrefix(err.Error(), fmt.Sprintf("trust policy statement %q has ", statementName))
}
