package policy

// notation checks a notation (Notary Project v2) validator.
func (c *checker) notation(path string, v *Validator) {
	c.add(path+".type", "validator type %q is not supported by this version yet", v.Type)
}

// notationWith checks a rule's options for a notation validator.
func (c *checker) notationWith(path string, w With, v *Validator) {}
