package policy

import (
	"fmt"
	"path/filepath"
	"regexp"
)

// KeylessChecks says what a rule demands of keyless signatures: a Rekor
// entry verified with the validator's Rekor key (tlog), and an embedded SCT
// verified with its CT log key (sct). Both default to true, as in
// Connaisseur. They mean nothing for key-based roots.
func (w With) KeylessChecks() (tlog, sct bool) {
	return w.VerifyInTransparencyLog == nil || *w.VerifyInTransparencyLog,
		w.VerifySCT == nil || *w.VerifySCT
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

// keyless checks a keyless identity and compiles its regexes. A regex is
// anchored (^(?:re)$): an unanchored subjectRegex such as
// "https://github.com/org/" would match any URI that merely contains it,
// "https://evil.example/?https://github.com/org/" included, and a policy
// author who wants a prefix match says so with ".*".
func (c *checker) keyless(path string, k *Keyless) {
	k.IssuerRE, k.SubjectRE = nil, nil
	k.IssuerRE = c.identityPart(path, "issuer", k.Issuer, k.IssuerRegex, "the OIDC issuer URL, e.g. https://token.actions.githubusercontent.com")
	k.SubjectRE = c.identityPart(path, "subject", k.Subject, k.SubjectRegex, "the certificate's e-mail or URI, e.g. a CI workflow identity")
}

// identityPart checks one of issuer/subject: exactly one of the exact value
// and the regex must be set. It returns the compiled regex, if any.
func (c *checker) identityPart(path, field, exact, re, what string) *regexp.Regexp {
	switch {
	case exact == "" && re == "":
		c.Add(path+"."+field, "required: %s or %sRegex (%s)", field, field, what)
	case exact != "" && re != "":
		c.Add(path, "%s and %sRegex are exclusive; give one", field, field)
	case re != "":
		compiled, err := regexp.Compile(`^(?:` + re + `)$`)
		if err != nil {
			c.Add(path+"."+field+"Regex", "not a valid regular expression: %v", err)
			return nil
		}
		return compiled
	}
	return nil
}

// sigstore parses the Sigstore material of a cosign validator with keyless
// roots, and checks that every keyless root has Fulcio CAs to chain to.
// Material is read only for validators that use it, so a Connaisseur file
// with key roots and a host block loads as before.
func (c *checker) sigstore(path string, v *Validator) {
	v.Sigstore = nil // never keep material from an earlier Validate
	if !v.hasKeyless() {
		if v.TrustedRoot != "" {
			c.Add(path+".trustedRoot", "only keyless trust roots use a trusted root, and validator %q has none", v.Name)
		}
		return
	}
	var (
		host Host
		ok   = true
		m    sigstoreParts
	)
	if v.Host != nil {
		host = *v.Host
	}
	if host.FulcioCert != "" {
		cas, err := parseFulcioPEM(host.FulcioCert)
		if err != nil {
			c.Add(path+".host.fulcioCert", "%v", err)
			ok = false
		}
		m.cas = cas
	}
	if host.RekorPubkey != "" {
		l, err := parseRekorPEM(host.RekorPubkey, host.Rekor)
		if err != nil {
			c.Add(path+".host.rekorPubkey", "%v", err)
			ok = false
		}
		m.rekor = l
	}
	if host.CTLogPubkey != "" {
		l, err := parseCTLogPEM(host.CTLogPubkey)
		if err != nil {
			c.Add(path+".host.ctLogPubkey", "%v", err)
			ok = false
		}
		m.ctlog = l
	}
	if v.TrustedRoot != "" {
		if !filepath.IsAbs(v.TrustedRoot) {
			c.Add(path+".trustedRoot", "%q: must be an absolute path", v.TrustedRoot)
			ok = false
		} else if tr, err := readTrustedRoot(v.TrustedRoot); err != nil {
			c.Add(path+".trustedRoot", "%v", err)
			ok = false
		} else {
			m.file = tr
		}
	}
	if !ok {
		return // reported; the rules are not checked against half the material
	}
	mat, err := m.material()
	if err != nil {
		c.Add(path+".host", "%v", err)
		return
	}
	if !mat.HasFulcio {
		for i := range v.TrustRoots {
			if v.TrustRoots[i].Keyless != nil {
				c.Add(fmt.Sprintf("%s.trustRoots[%d].keyless", path, i),
					"no Fulcio CA certificates to verify the signing certificate with: set %s.host.fulcioCert (PEM) or %s.trustedRoot", path, path)
			}
		}
		return
	}
	v.Sigstore = mat
}

// keylessWith checks a cosign rule's transparency switches against the
// material of the keyless roots it selects.
func (c *checker) keylessWith(path string, w With, v *Validator, selected []string) {
	var keyless string
	for _, n := range selected {
		if r := v.TrustRoot(n); r != nil && r.Keyless != nil {
			keyless = n
			break
		}
	}
	if keyless == "" || v.Sigstore == nil {
		return // key roots only, or material errors already reported
	}
	tlog, sct := w.KeylessChecks()
	if tlog && !v.Sigstore.HasRekor {
		c.Add(path+".verifyInTransparencyLog", "on (the default) for keyless trust root %q, but validator %q has no Rekor public key: set its host.rekorPubkey or trustedRoot, or verifyInTransparencyLog: false", keyless, v.Name)
	}
	if sct && !v.Sigstore.HasCTLog {
		c.Add(path+".verifySCT", "on (the default) for keyless trust root %q, but validator %q has no CT log public key: set its host.ctLogPubkey or trustedRoot, or verifySCT: false", keyless, v.Name)
	}
}
