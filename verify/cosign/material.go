package cosign

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	sgroot "github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

// material is what a validator's keyless roots are verified with: Fulcio
// CAs, Rekor and CT log keys, from inline PEM and/or a trusted_root.json,
// all read at load and never fetched.
type material struct {
	Trusted sgroot.TrustedMaterial
	// HasFulcio, HasRekor and HasCTLog say which kinds of material are
	// present, so that a rule needing a check without its key is refused
	// at load rather than denying every image.
	HasFulcio, HasRekor, HasCTLog bool
}

// maxTrustedRootBytes bounds a trusted_root.json (Sigstore's public one is
// about 10 KiB; a file many times that is not one).
const maxTrustedRootBytes = 4 << 20

// rekorKeysSince is when inline Rekor keys count as valid from: the SET
// check wants a start, and an inline key carries none.
var rekorKeysSince = time.Unix(0, 0).UTC()

// sigstoreParts collects the material as it is parsed.
type sigstoreParts struct {
	cas   []sgroot.CertificateAuthority
	rekor *sgroot.TransparencyLog
	ctlog *sgroot.TransparencyLog
	file  *sgroot.TrustedRoot
}

func (m *sigstoreParts) material() (*material, error) {
	var coll sgroot.TrustedMaterialCollection
	if len(m.cas) > 0 || m.rekor != nil || m.ctlog != nil {
		rekor, ct := map[string]*sgroot.TransparencyLog{}, map[string]*sgroot.TransparencyLog{}
		if m.rekor != nil {
			rekor[hex.EncodeToString(m.rekor.ID)] = m.rekor
		}
		if m.ctlog != nil {
			ct[hex.EncodeToString(m.ctlog.ID)] = m.ctlog
		}
		inline, err := sgroot.NewTrustedRoot(sgroot.TrustedRootMediaType01, m.cas, ct, nil, rekor)
		if err != nil {
			return nil, err
		}
		coll = append(coll, inline)
	}
	if m.file != nil {
		coll = append(coll, m.file)
	}
	return &material{
		Trusted:   coll,
		HasFulcio: len(coll.FulcioCertificateAuthorities()) > 0,
		HasRekor:  len(coll.RekorLogs()) > 0,
		HasCTLog:  len(coll.CTLogs()) > 0,
	}, nil
}

// parseFulcioPEM reads Fulcio's CA chain. The self-signed certificates are
// the roots and the others intermediates; if none is self-signed, each is
// a trust anchor of its own (an intermediate trusted directly).
func parseFulcioPEM(s string) ([]sgroot.CertificateAuthority, error) {
	certs, err := cryptoutils.UnmarshalCertificatesFromPEM([]byte(s))
	if err != nil {
		return nil, fmt.Errorf("not PEM certificates: %w", err)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate found")
	}
	var roots, intermediates []*x509.Certificate
	for i, c := range certs {
		if !c.IsCA {
			return nil, fmt.Errorf("certificate %d (%q) is not a CA certificate; give Fulcio's root and intermediate", i+1, c.Subject.String())
		}
		if bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil {
			roots = append(roots, c)
		} else {
			intermediates = append(intermediates, c)
		}
	}
	if len(roots) == 0 {
		roots, intermediates = intermediates, nil
	}
	cas := make([]sgroot.CertificateAuthority, 0, len(roots))
	for _, r := range roots {
		cas = append(cas, &sgroot.FulcioCertificateAuthority{Root: r, Intermediates: intermediates})
	}
	return cas, nil
}

// parseRekorPEM reads a Rekor public key. Rekor (v1) signs entry
// timestamps with ECDSA, and sigstore-go verifies them with ECDSA only.
func parseRekorPEM(s, baseURL string) (*sgroot.TransparencyLog, error) {
	pub, id, err := parseLogKey(s)
	if err != nil {
		return nil, err
	}
	k, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("a %T key; Rekor signs its entry timestamps with ECDSA", pub)
	}
	hash := crypto.SHA256
	switch k.Curve {
	case elliptic.P384():
		hash = crypto.SHA384
	case elliptic.P521():
		hash = crypto.SHA512
	}
	return &sgroot.TransparencyLog{BaseURL: baseURL, ID: id, ValidityPeriodStart: rekorKeysSince,
		HashFunc: crypto.SHA256, PublicKey: k, SignatureHashFunc: hash}, nil
}

// parseCTLogPEM reads a CT log public key.
func parseCTLogPEM(s string) (*sgroot.TransparencyLog, error) {
	pub, id, err := parseLogKey(s)
	if err != nil {
		return nil, err
	}
	return &sgroot.TransparencyLog{ID: id, PublicKey: pub, HashFunc: crypto.SHA256, SignatureHashFunc: crypto.SHA256}, nil
}

// parseLogKey reads a log's PEM public key and its log ID (the SHA-256 of
// the DER key, as Rekor and CT compute it).
func parseLogKey(s string) (crypto.PublicKey, []byte, error) {
	pub, err := cryptoutils.UnmarshalPEMToPublicKey([]byte(s))
	if err != nil {
		return nil, nil, fmt.Errorf("not a PEM public key: %w", err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot encode the public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return pub, sum[:], nil
}

func readTrustedRoot(path string) (*sgroot.TrustedRoot, error) {
	f, err := os.Open(path) // #nosec G304 -- the operator's trustedRoot path; reading it is the point.
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(f, maxTrustedRootBytes+1)); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if buf.Len() > maxTrustedRootBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxTrustedRootBytes)
	}
	tr, err := sgroot.NewTrustedRootFromJSON(buf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("%s is not a Sigstore trusted root: %w", path, err)
	}
	return tr, nil
}
