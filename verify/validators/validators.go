// Package validators maps a policy validator type to its implementation.
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
