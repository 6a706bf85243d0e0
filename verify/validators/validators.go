// Package validators answers: what must a policy pass to be used, and which
// implementation verifies for each validator type? It joins policy's own
// checks of a file's shape with each validator package's checks of its
// section (Check), and builds a policy's validators (Builder), so that the
// two can not drift apart. It knows nothing of NRI, the gate or reporting.
package validators

import (
	"fmt"

	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/nri-image-verifier/nri-image-verifier/verify"
	"github.com/nri-image-verifier/nri-image-verifier/verify/cosign"
	"github.com/nri-image-verifier/nri-image-verifier/verify/notaryv1"
	"github.com/nri-image-verifier/nri-image-verifier/verify/notation"
	"github.com/nri-image-verifier/nri-image-verifier/verify/registry"
	"github.com/nri-image-verifier/nri-image-verifier/verify/static"
)

// sections are the validator types' own checks, one per type that has
// settings to check beyond the file's shape. A static validator has none:
// its one setting, approve, is shape (required, a boolean).
var sections = []policy.Section{cosign.Section, notaryv1.Section, notation.Section}

// Check runs every check a policy must pass to be used: its shape
// (policy.Validate) and, for each validator, what its type's package finds
// in its settings (keys, keyless identities, Sigstore material, notation
// trust stores, attestation conditions), compiled with the function that
// package's New builds the validator with. Every problem is reported, each
// a *policy.FieldError with its path. `policy check`, `verify` and the
// daemon's load and reload all read a policy with it:
// policy.LoadWith(path, Check), policy.Watch(ctx, path, Check, ...).
func Check(p *policy.Policy) error { return p.Validate(sections...) }

// Builder returns the constructor (a gate.BuildFunc) for every validator type this build knows,
// all sharing one registry client (one transport, reused connections).
func Builder(reg *registry.Client) func(*policy.Validator) (verify.Verifier, error) {
	return func(v *policy.Validator) (verify.Verifier, error) {
		switch v.Type {
		case policy.TypeStatic:
			return static.New(v)
		case policy.TypeCosign:
			return cosign.New(v, reg)
		case policy.TypeNotaryV1:
			// The notary server's credentials come from the same docker
			// config as the registries', under the server's host name.
			var opts notaryv1.Options
			if reg != nil {
				opts.Keychain, opts.Timeout = reg.Limits().Keychain, reg.Limits().Timeout
			}
			return notaryv1.New(v, opts)
		case policy.TypeNotation:
			// Signatures are referrers in the image's registry: the same
			// client, credentials and caps as cosign's.
			return notation.New(v, reg)
		default:
			return nil, fmt.Errorf("validator type %q is not supported by this version", v.Type)
		}
	}
}
