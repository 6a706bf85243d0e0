package cosign

import (
	"crypto"
	"fmt"
	"path/filepath"
	"regexp"

	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/nri-image-verifier/nri-image-verifier/verify/keys"
)

// Section is the cosign validator's part of validators.Check: the
// validator's settings compiled as New compiles them (public keys, keyless
// identities, the Sigstore material of keyless roots, the registry CA),
// and its rules' transparency switches and attestations checked against
// them.
var Section = policy.Section{Type: policy.TypeCosign, Validator: func(e *policy.Errors, path string, v *policy.Validator) policy.RuleCheck {
	return compile(e, path, v).checkRule
}}

// settings is a cosign validator's section compiled: what New builds its
// trust roots from and what its rules are checked against. A root that did
// not compile (a problem reported, or a shape policy.Validate reports) is
// in neither map.
type settings struct {
	validator  *policy.Validator
	keys       map[string]crypto.PublicKey // key roots, by name
	identities map[string]*identity        // keyless roots, by name
	// material is the Sigstore material of the keyless roots; nil when
	// there are none or it did not load.
	material *material
}

// identity is a keyless root's identity as written, with its regexes
// compiled. A regex is anchored (^(?:re)$): an unanchored subjectRegex such
// as "https://github.com/org/" would match any URI that merely contains it,
// "https://evil.example/?https://github.com/org/" included, and a policy
// author who wants a prefix match says so with ".*".
type identity struct {
	policy.Keyless
	// issuerRE and subjectRE are nil when the exact value is given.
	issuerRE, subjectRE *regexp.Regexp
}

// compile checks and compiles v's settings, reporting each problem at its
// path under path (the validator's: "validators[2]", or "" for New).
func compile(e *policy.Errors, path string, v *policy.Validator) *settings {
	s := &settings{validator: v, keys: map[string]crypto.PublicKey{}, identities: map[string]*identity{}}
	if v.Cert != "" {
		if _, err := cryptoutils.UnmarshalCertificatesFromPEM([]byte(v.Cert)); err != nil {
			e.Add(policy.Path(path, "cert"), "not PEM certificates: %v", err)
		}
	}
	for i := range v.TrustRoots {
		r := &v.TrustRoots[i]
		rpath := policy.Path(path, fmt.Sprintf("trustRoots[%d]", i))
		switch {
		case r.Keyless != nil && r.Key == "":
			if id := compileIdentity(e, policy.Path(rpath, "keyless"), r.Keyless); id != nil {
				s.identities[r.Name] = id
			}
		case r.Keyless == nil && r.Key != "":
			pub, err := keys.Parse(r.Key)
			if err != nil {
				e.Add(policy.Path(rpath, "key"), "%v", err)
				continue
			}
			s.keys[r.Name] = pub
		}
	}
	s.material = loadMaterial(e, path, v)
	return s
}

// compileIdentity checks a keyless identity and compiles its regexes; nil
// when it has a problem.
func compileIdentity(e *policy.Errors, path string, k *policy.Keyless) *identity {
	before := e.Len()
	id := &identity{Keyless: *k}
	id.issuerRE = identityPart(e, path, "issuer", k.Issuer, k.IssuerRegex, "the OIDC issuer URL, e.g. https://token.actions.githubusercontent.com")
	id.subjectRE = identityPart(e, path, "subject", k.Subject, k.SubjectRegex, "the certificate's e-mail or URI, e.g. a CI workflow identity")
	if e.Len() > before {
		return nil
	}
	return id
}

// identityPart checks one of issuer/subject: exactly one of the exact value
// and the regex must be set. It returns the compiled regex, if any.
func identityPart(e *policy.Errors, path, field, exact, re, what string) *regexp.Regexp {
	switch {
	case exact == "" && re == "":
		e.Add(policy.Path(path, field), "required: %s or %sRegex (%s)", field, field, what)
	case exact != "" && re != "":
		e.Add(path, "%s and %sRegex are exclusive; give one", field, field)
	case re != "":
		compiled, err := regexp.Compile(`^(?:` + re + `)$`)
		if err != nil {
			e.Add(policy.Path(path, field+"Regex"), "not a valid regular expression: %v", err)
			return nil
		}
		return compiled
	}
	return nil
}

// hasKeyless says whether any of v's trust roots is a keyless identity.
func hasKeyless(v *policy.Validator) bool {
	for i := range v.TrustRoots {
		if v.TrustRoots[i].Keyless != nil {
			return true
		}
	}
	return false
}

// loadMaterial parses the Sigstore material of a cosign validator with
// keyless roots, and checks that every keyless root has Fulcio CAs to
// chain to. Material is read only for validators that use it, so a
// Connaisseur file with key roots and a host block loads as before.
func loadMaterial(e *policy.Errors, path string, v *policy.Validator) *material {
	if !hasKeyless(v) {
		return nil
	}
	var host policy.Host
	if v.Host != nil {
		host = *v.Host
	}
	m, ok := readParts(e, path, host, v.TrustedRoot)
	if !ok {
		return nil // reported; the rules are not checked against half the material
	}
	mat, err := m.material()
	if err != nil {
		e.Add(policy.Path(path, "host"), "%v", err)
		return nil
	}
	if !mat.HasFulcio {
		for i := range v.TrustRoots {
			if v.TrustRoots[i].Keyless != nil {
				e.Add(policy.Path(path, fmt.Sprintf("trustRoots[%d].keyless", i)),
					"no Fulcio CA certificates to verify the signing certificate with: set %s or %s", policy.Path(path, "host.fulcioCert (PEM)"), policy.Path(path, "trustedRoot"))
			}
		}
		return nil
	}
	return mat
}

// readParts parses the inline PEM material of host and the trusted root
// file; ok is false when something did not parse.
func readParts(e *policy.Errors, path string, host policy.Host, trustedRoot string) (m sigstoreParts, ok bool) {
	ok = true
	if host.FulcioCert != "" {
		cas, err := parseFulcioPEM(host.FulcioCert)
		if err != nil {
			e.Add(policy.Path(path, "host.fulcioCert"), "%v", err)
			ok = false
		}
		m.cas = cas
	}
	if host.RekorPubkey != "" {
		l, err := parseRekorPEM(host.RekorPubkey, host.Rekor)
		if err != nil {
			e.Add(policy.Path(path, "host.rekorPubkey"), "%v", err)
			ok = false
		}
		m.rekor = l
	}
	if host.CTLogPubkey != "" {
		l, err := parseCTLogPEM(host.CTLogPubkey)
		if err != nil {
			e.Add(policy.Path(path, "host.ctLogPubkey"), "%v", err)
			ok = false
		}
		m.ctlog = l
	}
	if trustedRoot != "" {
		if !filepath.IsAbs(trustedRoot) {
			e.Add(policy.Path(path, "trustedRoot"), "%q: must be an absolute path", trustedRoot)
			ok = false
		} else if tr, err := readTrustedRoot(trustedRoot); err != nil {
			e.Add(policy.Path(path, "trustedRoot"), "%v", err)
			ok = false
		} else {
			m.file = tr
		}
	}
	return m, ok
}

// keylessChecks says what a rule demands of keyless signatures: a Rekor
// entry verified with the validator's Rekor key (tlog), and an embedded SCT
// verified with its CT log key (sct). Both default to true, as in
// Connaisseur. They mean nothing for key-based roots.
func keylessChecks(w policy.With) (tlog, sct bool) {
	return w.VerifyInTransparencyLog == nil || *w.VerifyInTransparencyLog,
		w.VerifySCT == nil || *w.VerifySCT
}

// checkRule checks a rule's options (at path, its with) against the
// validator's compiled settings: the transparency switches against the
// material of the keyless roots it selects, and its attestations.
func (s *settings) checkRule(e *policy.Errors, path string, w policy.With) {
	s.checkKeylessRule(e, path, w)
	checkAttestations(e, policy.Path(path, "attestations"), w)
}

func (s *settings) checkKeylessRule(e *policy.Errors, path string, w policy.With) {
	v := s.validator
	var keyless string
	for _, n := range w.Selected(v) {
		if r := v.TrustRoot(n); r != nil && r.Keyless != nil {
			keyless = n
			break
		}
	}
	if keyless == "" || s.material == nil {
		return // key roots only, or material errors already reported
	}
	tlog, sct := keylessChecks(w)
	if tlog && !s.material.HasRekor {
		e.Add(policy.Path(path, "verifyInTransparencyLog"), "on (the default) for keyless trust root %q, but validator %q has no Rekor public key: set its host.rekorPubkey or trustedRoot, or verifyInTransparencyLog: false", keyless, v.Name)
	}
	if sct && !s.material.HasCTLog {
		e.Add(policy.Path(path, "verifySCT"), "on (the default) for keyless trust root %q, but validator %q has no CT log public key: set its host.ctLogPubkey or trustedRoot, or verifySCT: false", keyless, v.Name)
	}
}
