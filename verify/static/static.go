// Package static is the validator that answers without looking at the image:
// `approve: true` allows everything its rules match, `approve: false` denies.
package static

import (
	"context"
	"fmt"

	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/nri-image-verifier/nri-image-verifier/verify"
)

// Verifier is a static validator.
type Verifier struct {
	name    string
	approve bool
}

// New builds a static verifier from a validated policy validator.
func New(v *policy.Validator) (*Verifier, error) {
	if v.Approve == nil {
		return nil, fmt.Errorf("static validator %q: approve is not set", v.Name)
	}
	return &Verifier{name: v.Name, approve: *v.Approve}, nil
}

// Verify allows or denies according to approve.
func (s *Verifier) Verify(context.Context, verify.Subject, policy.With) (verify.Verdict, error) {
	if s.approve {
		return verify.Verdict{Allowed: true, Reason: fmt.Sprintf("static validator %q approves", s.name)}, nil
	}
	return verify.Verdict{Reason: fmt.Sprintf("static validator %q denies every image its rules match", s.name)}, nil
}
