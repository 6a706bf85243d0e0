package cosign

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	sgverify "github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

// The annotations cosign v2 puts on a keyless `.sig` layer.
const (
	certificateAnnotation = "dev.sigstore.cosign/certificate"
	chainAnnotation       = "dev.sigstore.cosign/chain"
	rekorBundleAnnotation = "dev.sigstore.cosign/bundle"
)

// bundleV01MediaType is the Sigstore bundle version whose tlog entries need
// only an inclusion promise (a SET), which is what a legacy signature has.
const bundleV01MediaType = "application/vnd.dev.sigstore.bundle+json;version=0.1"

// rekorBundle is cosign's dev.sigstore.cosign/bundle annotation: Rekor's
// signed entry timestamp and what it signs.
type rekorBundle struct {
	SignedEntryTimestamp []byte `json:"SignedEntryTimestamp"`
	Payload              struct {
		Body           string `json:"body"`
		IntegratedTime int64  `json:"integratedTime"`
		LogIndex       int64  `json:"logIndex"`
		LogID          string `json:"logID"`
	} `json:"Payload"`
}

// legacyEntity makes a keyless legacy signature into what sigstore-go
// verifies: a v0.1 bundle holding a message signature over the
// simple-signing payload, the signing certificate and, if the layer has
// one, the Rekor entry with its SET. The chain annotation only offers
// intermediates for path building; the roots are the policy's alone.
func legacyEntity(annotations map[string]string, sig, payload []byte) (sgverify.SignedEntity, error) {
	certPEM, ok := annotations[certificateAnnotation]
	if !ok {
		return nil, fmt.Errorf("signature has no certificate (%s annotation): not a keyless signature", certificateAnnotation)
	}
	certs, err := cryptoutils.UnmarshalCertificatesFromPEM([]byte(certPEM))
	if err != nil || len(certs) == 0 {
		return nil, fmt.Errorf("%s annotation is not a PEM certificate", certificateAnnotation)
	}
	var entries []*protorekor.TransparencyLogEntry
	if raw, ok := annotations[rekorBundleAnnotation]; ok {
		e, err := legacyTlogEntry(raw)
		if err != nil {
			return nil, fmt.Errorf("%s annotation: %w", rekorBundleAnnotation, err)
		}
		entries = append(entries, e)
	}
	digest := sha256.Sum256(payload)
	b, err := bundle.NewBundle(&protobundle.Bundle{
		MediaType: bundleV01MediaType,
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content:     &protobundle.VerificationMaterial_Certificate{Certificate: &protocommon.X509Certificate{RawBytes: certs[0].Raw}},
			TlogEntries: entries,
		},
		Content: &protobundle.Bundle_MessageSignature{MessageSignature: &protocommon.MessageSignature{
			MessageDigest: &protocommon.HashOutput{Algorithm: protocommon.HashAlgorithm_SHA2_256, Digest: digest[:]},
			Signature:     sig,
		}},
	})
	if err != nil {
		return nil, fmt.Errorf("signature material: %w", err)
	}
	return &legacySigned{Bundle: b, intermediates: chainIntermediates(annotations[chainAnnotation])}, nil
}

// legacyTlogEntry reads cosign's Rekor bundle annotation as a tlog entry
// with an inclusion promise. Kind and version come from the body, which
// sigstore-go checks against them.
func legacyTlogEntry(raw string) (*protorekor.TransparencyLogEntry, error) {
	var rb rekorBundle
	if err := json.Unmarshal([]byte(raw), &rb); err != nil {
		return nil, fmt.Errorf("not a Rekor bundle: %w", err)
	}
	body, err := base64.StdEncoding.DecodeString(rb.Payload.Body)
	if err != nil {
		return nil, errors.New("entry body is not base64")
	}
	logID, err := hex.DecodeString(rb.Payload.LogID)
	if err != nil || len(logID) == 0 {
		return nil, errors.New("log ID is not hex")
	}
	if len(rb.SignedEntryTimestamp) == 0 {
		return nil, errors.New("no signed entry timestamp")
	}
	var kv struct {
		Kind       string `json:"kind"`
		APIVersion string `json:"apiVersion"`
	}
	if err := json.Unmarshal(body, &kv); err != nil || kv.Kind == "" {
		return nil, errors.New("entry body is not a Rekor entry")
	}
	return &protorekor.TransparencyLogEntry{
		LogIndex:          rb.Payload.LogIndex,
		LogId:             &protocommon.LogId{KeyId: logID},
		KindVersion:       &protorekor.KindVersion{Kind: kv.Kind, Version: kv.APIVersion},
		IntegratedTime:    rb.Payload.IntegratedTime,
		InclusionPromise:  &protorekor.InclusionPromise{SignedEntryTimestamp: rb.SignedEntryTimestamp},
		CanonicalizedBody: body,
	}, nil
}

// chainIntermediates are the CA certificates of a chain annotation that
// are not self-signed: a signature may help build the path, never supply
// its anchor.
func chainIntermediates(chainPEM string) []*x509.Certificate {
	if chainPEM == "" {
		return nil
	}
	certs, err := cryptoutils.UnmarshalCertificatesFromPEM([]byte(chainPEM))
	if err != nil {
		return nil // only path-building help: without it, the policy's chain must do
	}
	var out []*x509.Certificate
	for _, c := range certs {
		if c.IsCA && !bytes.Equal(c.RawIssuer, c.RawSubject) {
			out = append(out, c)
		}
	}
	return out
}

// legacySigned is a bundle whose verification content also offers the
// chain annotation's intermediates (a v0.1 bundle would drop them).
type legacySigned struct {
	*bundle.Bundle
	intermediates []*x509.Certificate
}

func (l *legacySigned) VerificationContent() (sgverify.VerificationContent, error) {
	vc, err := l.Bundle.VerificationContent()
	if err != nil || len(l.intermediates) == 0 {
		return vc, err
	}
	return &withIntermediates{VerificationContent: vc, intermediates: l.intermediates}, nil
}

type withIntermediates struct {
	sgverify.VerificationContent
	intermediates []*x509.Certificate
}

func (w *withIntermediates) Intermediates() []*x509.Certificate { return w.intermediates }
