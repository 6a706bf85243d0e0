package policy

import "slices"

// appliesTo reports whether the rule may be used for a pod in namespace.
func (r *Rule) appliesTo(namespace string) bool {
	if len(r.Namespaces) == 0 {
		return true
	}
	return namespace != "" && slices.Contains(r.Namespaces, namespace)
}

func (r *Rule) validatorName() string {
	if r.Validator == "" {
		return DefaultName
	}
	return r.Validator
}

// modeOf is the rule's mode, else the policy's, else enforce.
func (p *Policy) modeOf(r *Rule) Mode {
	switch {
	case r.Mode != "":
		return r.Mode
	case p.Mode != "":
		return p.Mode
	}
	return ModeEnforce
}

// Validator returns the validator called name, or nil.
func (p *Policy) Validator(name string) *Validator {
	for i := range p.Validators {
		if p.Validators[i].Name == name {
			return &p.Validators[i]
		}
	}
	return nil
}

// TrustRoot returns v's trust root called name, or nil.
func (v *Validator) TrustRoot(name string) *TrustRoot {
	for i := range v.TrustRoots {
		if v.TrustRoots[i].Name == name {
			return &v.TrustRoots[i]
		}
	}
	return nil
}

// hasKeyless says whether any of v's trust roots is a keyless identity.
func (v *Validator) hasKeyless() bool {
	for i := range v.TrustRoots {
		if v.TrustRoots[i].Keyless != nil {
			return true
		}
	}
	return false
}
