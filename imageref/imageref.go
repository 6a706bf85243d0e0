// Package imageref answers one question: what image reference does a string
// name? It parses and normalises references the way the policy matches them
// (fully qualified, Docker Hub written docker.io, the registry host
// lower-cased), tells image IDs from references, and knows nothing of
// policies, registries or the runtime. It is a leaf: the policy, the gate and
// the containerd-side code all import it, and it imports none of them.
package imageref

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/distribution/reference"
	"github.com/google/go-containerregistry/pkg/name"
)

// ErrImageID is returned by Normalize and Repository for a bare image ID
// ("sha256:<hex>" or 64 hex digits). An ID names an image already on the
// node, not a repository, so no rule can be chosen from it: the caller must
// find the image's real name (and digest) elsewhere.
var ErrImageID = errors.New("an image ID is not an image reference")

// DockerHub is how this package writes Docker Hub's registry. ggcr calls it
// "index.docker.io"; Connaisseur's docs and containerd say "docker.io".
const DockerHub = "docker.io"

// Ref is a parsed, normalised image reference.
type Ref struct {
	// Repository is fully qualified, e.g. "docker.io/library/redis".
	Repository string
	// Tag is "" when the reference has a digest and no tag; "latest" when
	// it has neither.
	Tag string
	// Digest is "" or an OCI digest, "sha256:<hex>".
	Digest string
}

// String writes the reference back: repository, ":tag" if any, "@digest"
// if any.
func (r Ref) String() string {
	out := r.Repository
	if r.Tag != "" {
		out += ":" + r.Tag
	}
	if r.Digest != "" {
		out += "@" + r.Digest
	}
	return out
}

// IsImageID reports whether s is a bare image ID rather than a reference.
// Docker and containerd read these forms as IDs too, so a repository that
// looks like one cannot be pulled by that name anyway. Upper-case hex counts
// as well: refusing it is safer than reading it as a Docker Hub repository
// named "sha256".
func IsImageID(s string) bool {
	if hex, ok := strings.CutPrefix(s, "sha256:"); ok {
		return isHex(hex)
	}
	return len(s) == 64 && isHex(s)
}

func isHex(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') && (c < 'A' || c > 'F') {
			return false
		}
	}
	return true
}

// Normalize returns the fully qualified form of an image reference:
// registry (default docker.io, lower-cased), repository (library/ added for
// Docker Hub official images), then the tag and the digest as given. The tag
// defaults to "latest" only when neither tag nor digest is given. Unlike
// ggcr, a reference with both tag and digest keeps both.
func Normalize(image string) (string, error) {
	r, err := Parse(image)
	if err != nil {
		return "", err
	}
	return r.String(), nil
}

// Repository returns the fully qualified repository of an image reference,
// without tag or digest, e.g. "docker.io/library/redis".
func Repository(image string) (string, error) {
	r, err := Parse(image)
	return r.Repository, err
}

// Parse splits an image reference into its normalised repository, tag and
// digest (see Normalize). A bare image ID is an error wrapping ErrImageID.
func Parse(image string) (r Ref, err error) {
	if IsImageID(image) {
		return r, fmt.Errorf("%q: %w", image, ErrImageID)
	}
	// ggcr's NewDigest accepts "repo:tag@digest" but drops the tag, so the
	// two halves are parsed separately.
	base, digest, hasDigest := strings.Cut(image, "@")
	t, err := name.NewTag(foldHost(base), name.WithDefaultTag(""))
	if err != nil {
		return r, fmt.Errorf("image reference %q: %w", image, err)
	}
	if hasDigest && !digestForm.MatchString(digest) {
		return r, fmt.Errorf("image reference %q: invalid digest %q", image, digest)
	}
	if host := t.RegistryStr(); !registryHost.MatchString(host) {
		return r, fmt.Errorf("image reference %q: invalid registry host %q", image, host)
	}
	for _, comp := range strings.Split(t.RepositoryStr(), "/") {
		// ggcr only checks the characters; the distribution grammar that
		// containerd applies is stricter, and "http://reg/app" or
		// "reg.io//app" must not come out looking like a reference.
		if !pathComponent.MatchString(comp) {
			return r, fmt.Errorf("image reference %q: invalid repository path component %q", image, comp)
		}
	}
	tag := t.TagStr()
	if tag == "" && !hasDigest {
		tag = name.DefaultTag
	}
	return Ref{Repository: canonicalHost(t.RegistryStr()) + "/" + t.RepositoryStr(), Tag: tag, Digest: digest}, nil
}

// registryHost is a host name, IPv4 or bracketed IPv6 address with an
// optional port (lower-cased by then).
var registryHost = regexp.MustCompile(`^(\[[0-9a-f:.]+\]|[a-z0-9]([a-z0-9.-]*[a-z0-9])?)(:[0-9]+)?$`)

// digestForm is the OCI digest of the algorithms registries use (those
// go-digest registers), lower-case hex as the spec demands.
var digestForm = regexp.MustCompile(`^(sha256:[a-f0-9]{64}|sha384:[a-f0-9]{96}|sha512:[a-f0-9]{128})$`)

// pathComponent is the distribution reference grammar for one component
// of a repository path.
var pathComponent = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`)

// foldHost lower-cases the registry host of a reference or pattern (host
// names are case-insensitive; a mixed-case host must not slip past a rule).
// The first component is a host when it has "." or ":" or is "localhost",
// which is how docker, containerd and ggcr decide it too.
func foldHost(ref string) string {
	host, rest, ok := strings.Cut(ref, "/")
	if !ok || !LooksLikeHost(host) {
		return ref
	}
	return strings.ToLower(host) + "/" + rest
}

// LooksLikeHost reports whether the first component of a reference or
// pattern names a registry rather than a Docker Hub namespace: it has "." or
// ":" or is "localhost", which is how docker, containerd and ggcr decide it.
func LooksLikeHost(s string) bool {
	return strings.ContainsAny(s, ".:") || strings.EqualFold(s, "localhost")
}

// canonicalHost writes Docker Hub's aliases as docker.io.
func canonicalHost(host string) string {
	if host == name.DefaultRegistry {
		return DockerHub
	}
	return host
}

// ContainerdName is the name containerd's image store files ref under, as
// its CRI plugin writes it (distribution/reference's ParseDockerRef): fully
// qualified, the host's case kept (containerd keeps "EVIL.io/x:1" and
// "evil.io/x:1" as two records), and a "name:tag@digest" reference as
// "name@digest". Look records up by this name; match policy rules with
// Normalize.
func ContainerdName(ref string) (string, error) {
	if IsImageID(ref) {
		return "", fmt.Errorf("%q: %w", ref, ErrImageID)
	}
	named, err := reference.ParseDockerRef(ref)
	if err != nil {
		return "", fmt.Errorf("image reference %q: %w", ref, err)
	}
	return named.String(), nil
}
