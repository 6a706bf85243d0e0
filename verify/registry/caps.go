package registry

import (
	"context"
	"net/http"
	"regexp"
	"strings"
)

// Size classes. A hostile registry gets to send, per request, at most the
// cap of the class the request is in; the classes are as small as what
// honest registries send in them allows.
//
// Signature material is small by nature: a cosign .sig, .att or .sbom tag
// manifest is a list of layers, a referrer list a list of descriptors, a
// simple-signing payload a few hundred bytes, a Sigstore bundle or a
// notation envelope a few KiB. Image manifests and indexes are larger
// (indexes with dozens of platforms and annotations) but stay well below
// 1 MiB. Only attestations (in-toto statements with SBOM or provenance
// predicates) can be large, and go under the blob cap.
type sizeClass int

const (
	classOther     sizeClass = iota // ping, token: not under /v2/<name>/
	classManifest                   // image manifests and indexes, tag lists
	classSignature                  // signature manifests, referrer lists, signature blobs
	classBlob                       // other blobs: attestation envelopes and bundles
)

// signatureClassKey marks a context whose registry requests fetch
// signature material (see Client.SignatureManifest, SignatureBlob): a
// referrer manifest or a bundle is fetched by digest, which its path does
// not tell from an image manifest or a layer.
type signatureClassKey struct{}

func withSignatureClass(ctx context.Context) context.Context {
	return context.WithValue(ctx, signatureClassKey{}, true)
}

func signatureClass(ctx context.Context) bool {
	marked, _ := ctx.Value(signatureClassKey{}).(bool)
	return marked
}

// signatureTag matches the tags under which signature material is kept:
// cosign's sha256-<hex>.sig, .att and .sbom, and the OCI referrers tag
// schema's sha256-<hex> (the fallback list of referrers where a registry
// lacks the referrers API).
var signatureTag = regexp.MustCompile(`^(sha256-[0-9a-f]{64}|sha512-[0-9a-f]{128})(\.sig|\.att|\.sbom)?$`)

// limitFor picks the cap from the registry API path and, for content
// fetched by digest, from the caller's mark. A redirect hop (a blob served
// from a CDN) is classified by the request that was redirected.
func (t *capTransport) limitFor(req *http.Request) (int64, string) {
	marked := signatureClass(req.Context())
	for r := req; r != nil; {
		if c, kind := classify(r.URL.Path, marked); c != classOther {
			return t.caps[c], kind
		}
		if r.Response == nil {
			break
		}
		r = r.Response.Request
	}
	// Ping and token responses: small in practice; the largest cap.
	return t.caps[classOther], "response"
}

// classify returns the size class of an API path and the name its errors
// give it.
func classify(path string, marked bool) (sizeClass, string) {
	kind, ref := apiPath(path)
	switch kind {
	case "blobs":
		if marked {
			return classSignature, "signature blob"
		}
		return classBlob, "blob"
	case "manifests":
		tagged := signatureTag.MatchString(ref)
		switch {
		case tagged && strings.Contains(ref, "."):
			return classSignature, "signature manifest"
		case tagged:
			return classSignature, "referrer list"
		case marked:
			return classSignature, "signature manifest"
		}
		return classManifest, "manifest"
	case "referrers":
		return classSignature, "referrer list"
	case "tags":
		return classManifest, "tag list"
	}
	return classOther, ""
}

// apiPath returns "manifests", "blobs", ... and the reference for
// /v2/<name>/<kind>/<ref>.
func apiPath(path string) (kind, ref string) {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	if len(parts) < 4 || parts[0] != "v2" {
		return "", ""
	}
	return parts[len(parts)-2], parts[len(parts)-1]
}
