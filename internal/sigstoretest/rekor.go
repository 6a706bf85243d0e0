package sigstoretest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"testing"
	"time"

	"github.com/cyberphone/json-canonicalization/go/src/webpki.org/jsoncanonicalizer"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/rekor/pkg/pki"
	"github.com/sigstore/rekor/pkg/types"
	"github.com/sigstore/rekor/pkg/types/dsse"
	_ "github.com/sigstore/rekor/pkg/types/dsse/v0.0.1" // registers the dsse entry version
	"github.com/sigstore/rekor/pkg/types/hashedrekord"
	_ "github.com/sigstore/rekor/pkg/types/hashedrekord/v0.0.1" // registers the hashedrekord entry version
	"github.com/sigstore/rekor/pkg/util"
	"github.com/sigstore/sigstore/pkg/signature"
)

// rekorOrigin and rekorTreeID name the log in its checkpoints.
const (
	rekorOrigin = "rekor.sigstoretest.local"
	rekorTreeID = 1
)

// EntryOptions vary a Rekor entry. The zero value is a good one,
// integrated now.
type EntryOptions struct {
	// IntegratedTime is when the log says it took the entry.
	IntegratedTime time.Time
	// SETKey, if set, signs the SET and checkpoint in place of the Rekor
	// key, which the entry still names: a forged entry.
	SETKey *ecdsa.PrivateKey
}

// Entry is a Rekor entry with its inclusion promise (SET) and an inclusion
// proof in a one-entry tree with a signed checkpoint.
type Entry struct {
	Kind, Version  string
	Body           []byte
	IntegratedTime int64
	LogIndex       int64
	LogID          []byte
	SET            []byte
	checkpoint     string
}

// HashedRekord logs a message signature: sig over payload by leaf's key.
func (s *Sigstore) HashedRekord(t testing.TB, leaf *Leaf, payload, sig []byte, o EntryOptions) *Entry {
	t.Helper()
	sum := sha256.Sum256(payload)
	return s.entry(t, hashedrekord.KIND, types.ArtifactProperties{
		ArtifactHash:   "sha256:" + hex.EncodeToString(sum[:]),
		SignatureBytes: sig,
		PublicKeyBytes: [][]byte{[]byte(leaf.CertPEM(t))},
		PKIFormat:      string(pki.X509),
	}, o)
}

// DSSE logs a DSSE envelope (its JSON) signed by leaf's key.
func (s *Sigstore) DSSE(t testing.TB, leaf *Leaf, envelope []byte, o EntryOptions) *Entry {
	t.Helper()
	return s.entry(t, dsse.KIND, types.ArtifactProperties{
		ArtifactBytes:  envelope,
		PublicKeyBytes: [][]byte{[]byte(leaf.CertPEM(t))},
		PKIFormat:      string(pki.X509),
	}, o)
}

// entry canonicalizes the entry as Rekor does and signs it into the log.
func (s *Sigstore) entry(t testing.TB, kind string, props types.ArtifactProperties, o EntryOptions) *Entry {
	t.Helper()
	ctx := context.Background()
	var version string
	switch kind {
	case hashedrekord.KIND:
		version = hashedrekord.New().DefaultVersion()
	default:
		version = dsse.New().DefaultVersion()
	}
	proposed, err := types.NewProposedEntry(ctx, kind, version, props)
	if err != nil {
		t.Fatalf("sigstoretest: %s entry: %v", kind, err)
	}
	impl, err := types.CreateVersionedEntry(proposed)
	if err != nil {
		t.Fatalf("sigstoretest: %s entry: %v", kind, err)
	}
	body, err := types.CanonicalizeEntry(ctx, impl)
	if err != nil {
		t.Fatalf("sigstoretest: canonicalize %s entry: %v", kind, err)
	}
	it := o.IntegratedTime
	if it.IsZero() {
		it = time.Now()
	}
	key := s.rekorKey
	if o.SETKey != nil {
		key = o.SETKey
	}
	id := logID(t, s.rekorKey.Public())
	e := &Entry{Kind: kind, Version: version, Body: body, IntegratedTime: it.Unix(), LogIndex: 0, LogID: id[:]}
	e.SET = signSET(t, key, e)
	e.checkpoint = signCheckpoint(t, key, e.leafHash())
	return e
}

// signSET signs what Rekor's SET covers: the canonical JSON of the body,
// integrated time, log index and log ID.
func signSET(t testing.TB, key *ecdsa.PrivateKey, e *Entry) []byte {
	t.Helper()
	payload, err := json.Marshal(map[string]any{
		"body":           base64.StdEncoding.EncodeToString(e.Body),
		"integratedTime": e.IntegratedTime,
		"logIndex":       e.LogIndex,
		"logID":          hex.EncodeToString(e.LogID),
	})
	if err != nil {
		t.Fatalf("sigstoretest: SET payload: %v", err)
	}
	canon, err := jsoncanonicalizer.Transform(payload)
	if err != nil {
		t.Fatalf("sigstoretest: SET payload: %v", err)
	}
	sv, err := signature.LoadECDSASignerVerifier(key, crypto.SHA256)
	if err != nil {
		t.Fatalf("sigstoretest: SET signer: %v", err)
	}
	sig, err := sv.SignMessage(bytes.NewReader(canon))
	if err != nil {
		t.Fatalf("sigstoretest: sign SET: %v", err)
	}
	return sig
}

// signCheckpoint signs a checkpoint of the one-entry tree whose root is
// the entry's leaf hash.
func signCheckpoint(t testing.TB, key *ecdsa.PrivateKey, root []byte) string {
	t.Helper()
	sv, err := signature.LoadECDSASignerVerifier(key, crypto.SHA256)
	if err != nil {
		t.Fatalf("sigstoretest: checkpoint signer: %v", err)
	}
	cp, err := util.CreateAndSignCheckpoint(context.Background(), rekorOrigin, rekorTreeID, 1, root, sv)
	if err != nil {
		t.Fatalf("sigstoretest: checkpoint: %v", err)
	}
	return string(cp)
}

// leafHash is the RFC 6962 leaf hash of the body.
func (e *Entry) leafHash() []byte {
	sum := sha256.Sum256(append([]byte{0}, e.Body...))
	return sum[:]
}

// CosignBundle is the entry as cosign's dev.sigstore.cosign/bundle
// annotation holds it: the SET and what it signs.
func (e *Entry) CosignBundle(t testing.TB) string {
	t.Helper()
	b, err := json.Marshal(map[string]any{
		"SignedEntryTimestamp": e.SET,
		"Payload": map[string]any{
			"body":           base64.StdEncoding.EncodeToString(e.Body),
			"integratedTime": e.IntegratedTime,
			"logIndex":       e.LogIndex,
			"logID":          hex.EncodeToString(e.LogID),
		},
	})
	if err != nil {
		t.Fatalf("sigstoretest: cosign bundle: %v", err)
	}
	return string(b)
}

// Proto is the entry as a Sigstore bundle's tlog entry: inclusion promise
// and inclusion proof.
func (e *Entry) Proto() *protorekor.TransparencyLogEntry {
	return &protorekor.TransparencyLogEntry{
		LogIndex:          e.LogIndex,
		LogId:             &protocommon.LogId{KeyId: e.LogID},
		KindVersion:       &protorekor.KindVersion{Kind: e.Kind, Version: e.Version},
		IntegratedTime:    e.IntegratedTime,
		InclusionPromise:  &protorekor.InclusionPromise{SignedEntryTimestamp: e.SET},
		CanonicalizedBody: e.Body,
		InclusionProof: &protorekor.InclusionProof{
			LogIndex:   e.LogIndex,
			RootHash:   e.leafHash(),
			TreeSize:   1,
			Hashes:     [][]byte{},
			Checkpoint: &protorekor.Checkpoint{Envelope: e.checkpoint},
		},
	}
}
