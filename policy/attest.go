package policy

// Attestation is one in-toto attestation a rule requires.
type Attestation struct {
	// PredicateType is the in-toto predicate type, e.g.
	// "https://slsa.dev/provenance/v1".
	PredicateType string `json:"predicateType"`
	// Conditions are expressions over the predicate that must all hold.
	Conditions []string `json:"conditions,omitempty"`
}

// attestations checks a rule's required attestations.
func (c *checker) attestations(path string, w With, v *Validator) {
	if len(w.Attestations) > 0 {
		c.add(path, "attestations are not supported by this version yet")
	}
}
