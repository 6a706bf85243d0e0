package imagetest

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sigstore/sigstore/pkg/signature/payload"
)

// Media types and names cosign uses.
const (
	SimpleSigningMediaType  = "application/vnd.dev.cosign.simplesigning.v1+json"
	SignatureAnnotation     = "dev.cosignproject.cosign/signature"
	BundleMediaType         = "application/vnd.dev.sigstore.bundle.v0.3+json"
	CosignSignPredicateType = "https://sigstore.dev/cosign/sign/v1"
	InTotoPayloadType       = "application/vnd.in-toto+json"
	InTotoStatementType     = "https://in-toto.io/Statement/v1"
)

// SignOptions make bad signatures. The zero value makes a good one.
type SignOptions struct {
	// PayloadDigest, if set, is the digest the signed payload names instead
	// of the digest the signature is attached to: a genuine signature for
	// another image.
	PayloadDigest string
	// Tamper changes the payload after signing (it still names the same
	// digest), so the signature no longer matches it.
	Tamper bool
	// PredicateType replaces cosign's predicate type in a bundle's
	// statement (an attestation rather than a signature).
	PredicateType string
	// NoAnnotations leaves out the bundle referrer's annotations (content,
	// predicate type, creation time), as tools other than cosign may.
	NoAnnotations bool
}

// SigTag is the legacy signature tag of digest: sha256-<hex>.sig.
func SigTag(repo name.Repository, digest string) name.Tag {
	return repo.Tag(strings.Replace(digest, ":", "-", 1) + ".sig")
}

// SignLegacy signs digest in repo ("host/path") as cosign v2 does by default:
// a simple-signing payload naming the repository and digest, signed with
// SHA-256, appended as a layer to the image at tag sha256-<hex>.sig (created
// if absent) with the base64 signature in the layer's annotation.
func SignLegacy(t testing.TB, repo, digest string, s *Signer, opts SignOptions) {
	t.Helper()
	r := parseRepo(t, repo)
	named := digest
	if opts.PayloadDigest != "" {
		named = opts.PayloadDigest
	}
	d, err := name.NewDigest(r.Name() + "@" + named)
	if err != nil {
		t.Fatalf("imagetest: digest %q: %v", named, err)
	}
	body, err := payload.Cosign{Image: d}.MarshalJSON()
	if err != nil {
		t.Fatalf("imagetest: payload: %v", err)
	}
	sig := s.signLegacy(t, body)
	if opts.Tamper {
		body = tamperLegacy(t, body)
	}
	tag := SigTag(r, digest)
	img, err := mutate.Append(sigImage(t, tag), mutate.Addendum{
		Layer:       static.NewLayer(body, SimpleSigningMediaType),
		Annotations: map[string]string{SignatureAnnotation: base64.StdEncoding.EncodeToString(sig)},
	})
	if err != nil {
		t.Fatalf("imagetest: append signature: %v", err)
	}
	if err := remote.Write(tag, img); err != nil {
		t.Fatalf("imagetest: push %s: %v", tag, err)
	}
}

// sigImage returns the signature image at tag, or cosign's empty one (OCI
// manifest, OCI config) when there is none yet.
func sigImage(t testing.TB, tag name.Tag) v1.Image {
	t.Helper()
	img, err := remote.Image(tag)
	if err == nil {
		return img
	}
	var terr *transport.Error
	if !errors.As(err, &terr) || terr.StatusCode != http.StatusNotFound {
		t.Fatalf("imagetest: get %s: %v", tag, err)
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	return mutate.ConfigMediaType(base, types.OCIConfigJSON)
}

// tamperLegacy changes the claimed identity, leaving the digest alone.
func tamperLegacy(t testing.TB, body []byte) []byte {
	t.Helper()
	var p payload.SimpleContainerImage
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("imagetest: tamper: %v", err)
	}
	p.Critical.Identity.DockerReference += "-tampered"
	out, err := json.Marshal(p)
	if err != nil {
		t.Fatalf("imagetest: tamper: %v", err)
	}
	return out
}
