package notation

import (
	"context"
	"crypto/x509"
	"fmt"

	"github.com/notaryproject/notation-core-go/revocation"
	revresult "github.com/notaryproject/notation-core-go/revocation/result"
	notationgo "github.com/notaryproject/notation-go"
	"github.com/notaryproject/notation-go/verifier"
	"github.com/notaryproject/notation-go/verifier/trustpolicy"
	"github.com/notaryproject/notation-go/verifier/truststore"

	"github.com/nri-image-verifier/nri-image-verifier/policy"
)

// root is one policy trust root, as notation's trust stores: "ca:<store>"
// holds cert, "tsa:<store>" tsCert. store is derived from the root's
// position, because notation restricts store names and policy root names
// are free.
type root struct {
	name    string
	store   string
	certs   []*x509.Certificate
	tsCerts []*x509.Certificate
}

// newRoot parses tr, the i-th trust root. On error, field says which of
// its fields is wrong.
func newRoot(i int, tr policy.TrustRoot) (r *root, field string, err error) {
	certs, tsCerts, field, err := rootCerts(tr)
	if err != nil {
		return nil, field, err
	}
	return &root{name: tr.Name, store: fmt.Sprintf("root%d", i), certs: certs, tsCerts: tsCerts}, "", nil
}

// anchors reports whether chain contains one of the root's certificates:
// what notation's authenticity check asks of a trust store
// (signature.VerifyAuthenticity), asked of this root alone so that the
// verdict can say which roots a signature counts for.
func (r *root) anchors(chain []*x509.Certificate) bool {
	for _, c := range chain {
		for _, t := range r.certs {
			if t.Equal(c) {
				return true
			}
		}
	}
	return false
}

// memStore is notation's X509TrustStore over the policy's certificates:
// nothing is read from files or ~/.config/notation.
type memStore map[string][]*x509.Certificate

func storeKey(t truststore.Type, name string) string { return string(t) + ":" + name }

func (s memStore) GetCertificates(_ context.Context, t truststore.Type, name string) ([]*x509.Certificate, error) {
	certs := s[storeKey(t, name)]
	if len(certs) == 0 {
		return nil, truststore.TrustStoreError{Msg: fmt.Sprintf("trust store %q of type %q is not configured", name, t)}
	}
	return certs, nil
}

// offline is the revocation validator handed to notation: the node dials
// nothing but registries, so OCSP and CRL are not consulted and every
// certificate counts as one without revocation information (notation's
// own reading of a certificate that names no OCSP or CRL server).
// Code-signing revocation is skipped in the trust policy besides (see
// newNotationVerifier); this one answers for the timestamping chain.
type offline struct{}

func (offline) ValidateContext(_ context.Context, o revocation.ValidateContextOptions) ([]*revresult.CertRevocationResult, error) {
	out := make([]*revresult.CertRevocationResult, len(o.CertChain))
	for i := range out {
		out[i] = &revresult.CertRevocationResult{Result: revresult.ResultNonRevokable}
	}
	return out, nil
}

// statementName names the one trust policy statement in notation's
// messages.
const statementName = "policy"

// newNotationVerifier builds notation's verifier for one rule: one trust
// policy statement for every repository (the policy's pattern has already
// chosen the rule), the selected roots' trust stores, the rule's level,
// identities and verifyTimestamp, revocation skipped, and no plugin
// manager, so that a signature needing a plugin fails verification.
func newNotationVerifier(roots []*root, with policy.With) (notationgo.Verifier, error) {
	store := memStore{}
	var stores []string
	for _, r := range roots {
		store[storeKey(truststore.TypeCA, r.store)] = r.certs
		stores = append(stores, storeKey(truststore.TypeCA, r.store))
		if len(r.tsCerts) > 0 {
			store[storeKey(truststore.TypeTSA, r.store)] = r.tsCerts
			stores = append(stores, storeKey(truststore.TypeTSA, r.store))
		}
	}
	doc := &trustpolicy.Document{
		Version: "1.0",
		TrustPolicies: []trustpolicy.TrustPolicy{{
			Name:           statementName,
			RegistryScopes: []string{"*"},
			SignatureVerification: trustpolicy.SignatureVerification{
				VerificationLevel: levelOf(with),
				Override:          map[trustpolicy.ValidationType]trustpolicy.ValidationAction{trustpolicy.TypeRevocation: trustpolicy.ActionSkip},
				VerifyTimestamp:   trustpolicy.TimestampOption(verifyTimestampOf(with)),
			},
			TrustStores:       stores,
			TrustedIdentities: identitiesOf(with),
		}},
	}
	return verifier.NewWithOptions(doc, store, nil, verifier.VerifierOptions{
		RevocationCodeSigningValidator:  offline{},
		RevocationTimestampingValidator: offline{},
	})
}
