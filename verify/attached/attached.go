// Package attached answers what every validator whose signatures are
// attached to the image in its registry (cosign, notation) asks before it
// looks at one: is the validator complete, which trust roots does the rule
// select and what does it ask of them, is the subject a repository and a
// digest, which digests count as the image, and is a registry failure a
// denial or a transient error. Sharing these answers keeps the validators'
// preludes, and the words of their denials, the same. It must not know a
// signature format, NRI or Kubernetes.
package attached

import (
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/nri-image-verifier/nri-image-verifier/verify"
	"github.com/nri-image-verifier/nri-image-verifier/verify/registry"
)

// Validator is a policy validator with its trust roots built (of the
// validator's own type R) and the registry client its signatures are read
// with. New makes one; it does not change afterwards.
type Validator[R any] struct {
	// Kind is the validator type, for messages ("cosign").
	Kind   string
	Policy *policy.Validator
	Reg    *registry.Client
	// Roots are the built trust roots, by name.
	Roots map[string]R
}

// New checks what every such validator needs (the policy validator, a
// registry client, trust roots) and builds the roots with build, which
// compiles the validator's section of the policy. Its errors name the
// validator.
func New[R any](kind string, v *policy.Validator, reg *registry.Client, build func(*policy.Validator) (map[string]R, error)) (Validator[R], error) {
	if v == nil {
		return Validator[R]{}, fmt.Errorf("%s validator: none given", kind)
	}
	if reg == nil {
		return Validator[R]{}, fmt.Errorf("%s validator %q: no registry client", kind, v.Name)
	}
	if len(v.TrustRoots) == 0 {
		return Validator[R]{}, fmt.Errorf("%s validator %q: no trust roots", kind, v.Name)
	}
	roots, err := build(v)
	if err != nil {
		return Validator[R]{}, fmt.Errorf("%s validator %q: %w", kind, v.Name, err)
	}
	return Validator[R]{Kind: kind, Policy: v, Reg: reg, Roots: roots}, nil
}

// Selection is the trust roots a rule selects, with what it asks of them.
type Selection[R any] struct {
	verify.Quorum
	// Roots[i] is the root named Quorum.Names[i].
	Roots []R
}

// Select returns what with asks of the validator's roots (see
// policy.With.Selected and Need: the threshold is never below 1, so a rule
// never admits an unsigned image). A non-empty reason denies: the rule
// names a root the validator does not define (a policy built in code;
// validators.Check refuses one).
func (a Validator[R]) Select(with policy.With) (sel Selection[R], reason string) {
	names := with.Selected(a.Policy)
	sel.Roots = make([]R, 0, len(names))
	for _, n := range names {
		r, ok := a.Roots[n]
		if !ok {
			return Selection[R]{}, fmt.Sprintf("trust root %q is not defined in %s validator %q", n, a.Kind, a.Policy.Name)
		}
		sel.Roots = append(sel.Roots, r)
	}
	threshold, required := with.Need(a.Policy)
	sel.Quorum = verify.Quorum{Names: names, Threshold: threshold, Required: required}
	return sel, ""
}

// Repository parses s's repository and checks its digest. A non-empty
// reason denies.
func Repository(s verify.Subject) (repo name.Repository, reason string) {
	repo, err := name.NewRepository(s.Repository)
	if err != nil {
		return name.Repository{}, fmt.Sprintf("repository %q is not valid: %v", s.Repository, err)
	}
	if _, err := v1.NewHash(s.Digest); err != nil {
		return name.Repository{}, fmt.Sprintf("image digest %q is not valid: %v", s.Digest, err)
	}
	return repo, ""
}

// Candidates returns the digests whose signatures count for s, top first
// (see registry.Client.Candidates). On error, see Failed.
func (a Validator[R]) Candidates(ctx context.Context, repo name.Repository, s verify.Subject) ([]string, error) {
	return a.Reg.Candidates(ctx, repo, s.Digest, s.ConfigDigest)
}

// Failed is the outcome of a registry failure: a denial when the
// registry's answer is definitive (what was asked for is not there), else
// the validator's transient error, which the verdict cache keeps briefly.
func (a Validator[R]) Failed(err error) (verify.Verdict, error) {
	if registry.IsDefinitive(err) {
		return verify.Verdict{Reason: err.Error()}, nil
	}
	return verify.Verdict{}, a.Transient(err)
}

// Transient is err as the validator's transient failure: the answer is
// open, for instance because a signature could not be fetched.
func (a Validator[R]) Transient(err error) error {
	return fmt.Errorf("%s validator %q: %w", a.Kind, a.Policy.Name, err)
}
