package imagetest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	pbbundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/sign"
	"github.com/sigstore/sigstore/pkg/signature/payload"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/nri-image-verifier/nri-image-verifier/internal/sigstoretest"
)

// The annotations cosign v2 writes on a keyless signature layer.
const (
	CertificateAnnotation = "dev.sigstore.cosign/certificate"
	ChainAnnotation       = "dev.sigstore.cosign/chain"
	RekorBundleAnnotation = "dev.sigstore.cosign/bundle"
)

// KeylessOptions vary a keyless signature. The zero value makes a good
// one: a fresh certificate with an SCT, and a Rekor entry for the
// signature with its SET (and, in a bundle, an inclusion proof).
type KeylessOptions struct {
	// PayloadDigest, if set, is the digest the signed payload names
	// instead of the digest the signature is attached to.
	PayloadDigest string
	// Cert varies the signing certificate (validity, SCT).
	Cert sigstoretest.CertOptions
	// Entry varies the Rekor entry (integrated time, forged SET).
	Entry sigstoretest.EntryOptions
	// NoEntry leaves the Rekor entry out.
	NoEntry bool
	// EntryOfOther logs another signature by the same certificate instead
	// of this one: a genuine entry whose body does not match.
	EntryOfOther bool
}

// SignLegacyKeyless signs digest in repo as cosign v2 does keyless: the
// simple-signing payload signed with a fresh Fulcio certificate's key (ECDSA
// P-256, SHA-256), the layer annotated with the signature, the certificate,
// the chain and the Rekor bundle (SET and what it signs).
func SignLegacyKeyless(t testing.TB, repo, digest string, ss *sigstoretest.Sigstore, id sigstoretest.Identity, o KeylessOptions) {
	t.Helper()
	r := parseRepo(t, repo)
	named := digest
	if o.PayloadDigest != "" {
		named = o.PayloadDigest
	}
	d, err := name.NewDigest(r.Name() + "@" + named)
	if err != nil {
		t.Fatalf("imagetest: digest %q: %v", named, err)
	}
	body, err := payload.Cosign{Image: d}.MarshalJSON()
	if err != nil {
		t.Fatalf("imagetest: payload: %v", err)
	}
	leaf := ss.Issue(t, id, o.Cert)
	s := &Signer{Kind: ECDSAP256, priv: leaf.Key}
	sig := s.signLegacy(t, body)
	ann := map[string]string{
		SignatureAnnotation:   base64.StdEncoding.EncodeToString(sig),
		CertificateAnnotation: leaf.CertPEM(t),
		ChainAnnotation:       ss.ChainPEM(t),
	}
	if !o.NoEntry {
		logged, loggedSig := body, sig
		if o.EntryOfOther {
			logged = append(bytes.Clone(body), ' ')
			loggedSig = s.signLegacy(t, logged)
		}
		ann[RekorBundleAnnotation] = ss.HashedRekord(t, leaf, logged, loggedSig, o.Entry).CosignBundle(t)
	}
	tag := SigTag(r, digest)
	img, err := mutate.Append(sigImage(t, tag), mutate.Addendum{
		Layer:       static.NewLayer(body, SimpleSigningMediaType),
		Annotations: ann,
	})
	if err != nil {
		t.Fatalf("imagetest: append signature: %v", err)
	}
	if err := remote.Write(tag, img); err != nil {
		t.Fatalf("imagetest: push %s: %v", tag, err)
	}
}

// SignBundleKeyless signs digest in repo as cosign v3 does keyless: a
// Sigstore bundle v0.3 whose DSSE envelope holds the cosign sign statement,
// with the signing certificate as verification material and the Rekor
// entry (SET and inclusion proof), attached as a referrer.
func SignBundleKeyless(t testing.TB, repo, digest string, ss *sigstoretest.Sigstore, id sigstoretest.Identity, o KeylessOptions) {
	t.Helper()
	raw := KeylessBundleJSON(t, repo, digest, ss, id, o)
	AttachReferrer(t, repo, digest, BundleMediaType, raw, map[string]string{
		"org.opencontainers.image.created":  time.Now().UTC().Format(time.RFC3339),
		"dev.sigstore.bundle.content":       "dsse-envelope",
		"dev.sigstore.bundle.predicateType": CosignSignPredicateType,
	})
}

// KeylessBundleJSON makes the bundle SignBundleKeyless attaches.
func KeylessBundleJSON(t testing.TB, repo, digest string, ss *sigstoretest.Sigstore, id sigstoretest.Identity, o KeylessOptions) []byte {
	t.Helper()
	r := parseRepo(t, repo)
	named := digest
	if o.PayloadDigest != "" {
		named = o.PayloadDigest
	}
	algo, hex, ok := strings.Cut(named, ":")
	if !ok {
		t.Fatalf("imagetest: %q is not a digest", named)
	}
	data, err := json.Marshal(statement{
		Type:          InTotoStatementType,
		Subject:       []subject{{Name: r.Name(), Digest: map[string]string{algo: hex}}},
		PredicateType: CosignSignPredicateType,
		Predicate:     map[string]any{},
	})
	if err != nil {
		t.Fatalf("imagetest: statement: %v", err)
	}
	leaf := ss.Issue(t, id, o.Cert)
	kp := (&Signer{Kind: ECDSAP256, priv: leaf.Key}).keypair(t)
	pb := signDSSE(t, data, kp)
	if !o.NoEntry {
		env := pb.GetDsseEnvelope()
		if o.EntryOfOther {
			other := signDSSE(t, append(bytes.Clone(data), ' '), kp)
			env = other.GetDsseEnvelope()
		}
		envJSON, err := protojson.Marshal(env)
		if err != nil {
			t.Fatalf("imagetest: envelope JSON: %v", err)
		}
		pb.VerificationMaterial.TlogEntries = []*protorekor.TransparencyLogEntry{ss.DSSE(t, leaf, envJSON, o.Entry).Proto()}
	}
	pb.VerificationMaterial.Content = &pbbundle.VerificationMaterial_Certificate{Certificate: &protocommon.X509Certificate{RawBytes: leaf.Cert.Raw}}
	b, err := bundle.NewBundle(pb)
	if err != nil {
		t.Fatalf("imagetest: bundle: %v", err)
	}
	raw, err := b.MarshalJSON()
	if err != nil {
		t.Fatalf("imagetest: bundle JSON: %v", err)
	}
	return raw
}

// signDSSE signs an in-toto statement into a bundle (key material for now;
// the caller puts the certificate in).
func signDSSE(t testing.TB, statement []byte, kp *keypair) *pbbundle.Bundle {
	t.Helper()
	pb, err := sign.Bundle(&sign.DSSEData{Data: statement, PayloadType: InTotoPayloadType}, kp, sign.BundleOptions{})
	if err != nil {
		t.Fatalf("imagetest: sign bundle: %v", err)
	}
	return pb
}
