package cosign

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nri-image-verifier/nri-image-verifier/policy"
	sgroot "github.com/sigstore/sigstore-go/pkg/root"
	sgverify "github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/signature"
)

// trustRoot is one policy trust root, ready to verify both formats: a key
// (legacy and bundle set) or a keyless identity (keyless set).
type trustRoot struct {
	name string
	// legacy checks `.sig` signatures: cosign v2 signs with SHA-256 for
	// every key type (pure Ed25519 for Ed25519).
	legacy signature.Verifier
	// bundle checks Sigstore bundles against this key alone, with no
	// transparency log or timestamp (key-based verification needs none).
	bundle *sgverify.Verifier
	// keyless checks Fulcio-certified signatures (see keyless.go).
	keyless *keylessRoot
	// rule is the options of the rule this copy of the root was selected
	// for (forRule): its transparency switches apply to keyless roots.
	rule policy.With
}

// root builds the trust root tr from the validator's compiled settings: a
// key root from its parsed key, a keyless root from its compiled identity
// and the validator's Sigstore material.
func (s *settings) root(tr policy.TrustRoot) (*trustRoot, error) {
	if tr.Keyless == nil {
		pub := s.keys[tr.Name]
		if pub == nil {
			return nil, fmt.Errorf("trust root %q: no public key", tr.Name)
		}
		return newKeyRoot(tr.Name, pub)
	}
	id := s.identities[tr.Name]
	if id == nil {
		return nil, fmt.Errorf("trust root %q: not a valid keyless identity (give key or keyless, not both)", tr.Name)
	}
	k, err := newKeylessRoot(tr.Name, id, s.material)
	if err != nil {
		return nil, err
	}
	return &trustRoot{name: tr.Name, keyless: k}, nil
}

// forRule is r for one verification under the rule with options w.
func (r *trustRoot) forRule(w policy.With) *trustRoot {
	c := *r
	c.rule = w
	return &c
}

// newKeyRoot builds the root called name that pins the key pub.
func newKeyRoot(name string, pub crypto.PublicKey) (*trustRoot, error) {
	legacy, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("trust root %q: %w", name, err)
	}
	bv, err := bundleKeyVerifier(pub)
	if err != nil {
		return nil, fmt.Errorf("trust root %q: %w", name, err)
	}
	// The bundle's key hint is the signer's claim: ignore it and always
	// answer with this root's key. Zero validity bounds: valid at any time,
	// there being no trusted time to check against.
	material := sgroot.NewTrustedPublicKeyMaterial(func(string) (sgroot.TimeConstrainedVerifier, error) {
		return sgroot.NewExpiringKey(bv, time.Time{}, time.Time{}), nil
	})
	// Only the predicate type is read, so the predicate is not decoded.
	sv, err := sgverify.NewVerifier(material, sgverify.WithNoObserverTimestamps(), sgverify.WithoutStatementPredicate())
	if err != nil {
		return nil, fmt.Errorf("trust root %q: %w", name, err)
	}
	return &trustRoot{name: name, legacy: legacy, bundle: sv}, nil
}

// verify checks a signed entity (a Sigstore bundle, or a legacy signature
// made into one) against this root: for a key root, the signature with the
// root's key; for a keyless root, the certificate, identity and the
// transparency checks with asks for; and the binding to artifact. It is
// the one place that says what "signed by this root" means; the
// statement's predicate is not decoded (read the verified envelope payload
// where it matters).
func (r *trustRoot) verify(e sgverify.SignedEntity, with policy.With, artifact sgverify.ArtifactPolicyOption) (*sgverify.VerificationResult, error) {
	if r.keyless != nil {
		return r.keyless.verify(e, with, artifact)
	}
	return r.bundle.Verify(e, sgverify.NewPolicy(artifact, sgverify.WithKey()))
}

// verifyLegacy checks a legacy `.sig` signature over payload. A key root
// verifies the signature alone, as cosign v2 does; a keyless root reads
// the certificate and Rekor bundle from the layer's annotations.
func (r *trustRoot) verifyLegacy(annotations map[string]string, sig, payload []byte) error {
	if r.keyless == nil {
		return r.legacy.VerifySignature(bytes.NewReader(sig), bytes.NewReader(payload))
	}
	e, err := legacyEntity(annotations, sig, payload)
	if err != nil {
		return err
	}
	_, err = r.verify(e, r.rule, sgverify.WithArtifact(bytes.NewReader(payload)))
	return err
}

// bundleKeyVerifier accepts what cosign v3 and sigstore-go sign with: the
// key's default algorithm (ECDSA P-384 with SHA-384, ...) and, for ECDSA,
// also SHA-256, which older clients used for every curve.
func bundleKeyVerifier(pub crypto.PublicKey) (signature.Verifier, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		sha256v, err := signature.LoadVerifier(k, crypto.SHA256)
		if err != nil || k.Curve == elliptic.P256() {
			return sha256v, err
		}
		def, err := signature.LoadDefaultVerifier(k)
		if err != nil {
			return nil, err
		}
		return &anyVerifier{vs: []signature.Verifier{def, sha256v}}, nil
	case *rsa.PublicKey, ed25519.PublicKey:
		// RSA PKCS#1 v1.5 with SHA-256; pure Ed25519 (sigstore-go's choice
		// for DSSE).
		return signature.LoadVerifier(k, crypto.SHA256)
	default:
		return nil, fmt.Errorf("unsupported public key type %T", pub)
	}
}

// anyVerifier accepts a signature that one of its verifiers accepts.
type anyVerifier struct{ vs []signature.Verifier }

func (a *anyVerifier) PublicKey(opts ...signature.PublicKeyOption) (crypto.PublicKey, error) {
	return a.vs[0].PublicKey(opts...)
}

func (a *anyVerifier) VerifySignature(sig, msg io.Reader, opts ...signature.VerifyOption) error {
	// Both are small here: a signature and a DSSE pre-authentication
	// encoding of a capped blob.
	s, err := io.ReadAll(sig)
	if err != nil {
		return err
	}
	m, err := io.ReadAll(msg)
	if err != nil {
		return err
	}
	var errs []error
	for _, v := range a.vs {
		err := v.VerifySignature(bytes.NewReader(s), bytes.NewReader(m), opts...)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
