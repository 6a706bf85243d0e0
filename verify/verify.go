// Package verify defines what a validator is and holds what all validators
// share: the verdict cache. One package per validator type lives below it.
// Validators know nothing of NRI or Kubernetes.
package verify

import (
	"context"

	"github.com/nri-image-verifier/nri-image-verifier/policy"
)

// Subject is the image whose signatures are checked. It is always bound to a
// digest: tags and annotations are never trusted.
type Subject struct {
	// Repository is the fully qualified repository, without tag or digest,
	// for example "docker.io/library/redis" or "127.0.0.1:5000/app".
	Repository string
	// Digest is the top-level digest (manifest or index) the runtime uses,
	// "sha256:<hex>".
	Digest string
	// ConfigDigest is the image config digest of the container's platform
	// manifest, if known. When set, a validator must check that the manifest
	// chain from a signed digest really leads to it.
	ConfigDigest string
}

// Verdict is a validator's definitive answer. A transient failure (registry
// unreachable, timeout) is returned as an error instead, so that it is
// cached only briefly.
type Verdict struct {
	Allowed bool
	// Reason says, in one line, why: which roots signed, or what is missing.
	Reason string
	// Signers names the trust roots whose signatures verified.
	Signers []string
}

// Verifier checks one Subject against one rule's options.
type Verifier interface {
	Verify(ctx context.Context, s Subject, with policy.With) (Verdict, error)
}

// VerifierFunc adapts a function to Verifier.
type VerifierFunc func(ctx context.Context, s Subject, with policy.With) (Verdict, error)

// Verify calls f.
func (f VerifierFunc) Verify(ctx context.Context, s Subject, with policy.With) (Verdict, error) {
	return f(ctx, s, with)
}
