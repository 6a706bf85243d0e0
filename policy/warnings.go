package policy

import (
	"fmt"
	"strings"
)

// Warnings lists settings that load but do nothing at the node, so that a
// team moving a Connaisseur file here learns what it does not get (in
// particular Connaisseur checks the transparency log by default, and here
// only keyless roots are checked against it), and patterns that match more
// than they seem to.
func (p *Policy) Warnings() []string {
	var ws []string
	for i, v := range p.Validators {
		at := fmt.Sprintf("validators[%d] (%s)", i, v.Name)
		if v.Auth != nil && v.Auth.SecretName != "" {
			ws = append(ws, at+".auth.secretName: not used at the node; registry credentials come from --docker-config")
		}
		if v.Host != nil && !v.hasKeyless() && (v.Host.Rekor != "" || v.Host.RekorPubkey != "" || v.Host.FulcioCert != "" || v.Host.CTLogPubkey != "") {
			ws = append(ws, at+".host: transparency log and Fulcio settings are used by keyless trust roots only, and this validator has none")
		}
		if v.Cert != "" && v.Type != TypeNotaryV1 {
			ws = append(ws, at+".cert: a private registry CA is not supported by this version yet; the system roots are used")
		}
	}
	for i, r := range p.Rules {
		at := fmt.Sprintf("policy[%d] (%s)", i, r.Pattern)
		if hostWildcard(r.Pattern) {
			ws = append(ws, at+".pattern: a wildcard in the registry part also matches '/', so it matches images of any registry "+
				"whose path ends the same way (\"*.corp.example/*\" matches \"evil.io/x.corp.example/app\"); write one rule per registry host")
		}
		if r.With.Mode != "" {
			ws = append(ws, fmt.Sprintf("%s.with.mode %q: an admission setting, ignored at the node", at, r.With.Mode))
		}
		if (isTrue(r.With.VerifyInTransparencyLog) || isTrue(r.With.VerifySCT)) && selectsKeyRoot(p.Validator(r.validatorName()), r.With) {
			ws = append(ws, at+".with: verifyInTransparencyLog/verifySCT apply to keyless trust roots only; signatures of key-based roots are verified without a log")
		}
	}
	return ws
}

func isTrue(b *bool) bool { return b != nil && *b }

// selectsKeyRoot says whether the rule selects a key-based root of v.
func selectsKeyRoot(v *Validator, w With) bool {
	if v == nil {
		return false
	}
	for _, n := range w.Selected(v) {
		if r := v.TrustRoot(n); r != nil && r.Keyless == nil {
			return true
		}
	}
	return false
}

// hostWildcard says whether the pattern's first component, where the
// registry goes, holds a wildcard. '*' matches '/' too (Connaisseur's
// semantics, kept for compatibility), so "*.corp.example/*" matches
// "evil.io/x.corp.example/app". A pattern made of wildcards only ("*",
// "*:*") says "everything" and surprises no one.
func hostWildcard(pattern string) bool {
	first, _, _ := strings.Cut(pattern, "/")
	if !hasWildcard(first) {
		return false
	}
	return strings.Trim(pattern, "*?:@") != ""
}
