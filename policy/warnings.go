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
		ws = append(ws, authWarnings(at, v.Auth)...)
		if v.Host != nil && !v.hasKeyless() && (v.Host.Rekor != "" || v.Host.RekorPubkey != "" || v.Host.FulcioCert != "" || v.Host.CTLogPubkey != "") {
			ws = append(ws, at+".host: transparency log and Fulcio settings are used by keyless trust roots only, and this validator has none")
		}
		for j, r := range v.TrustRoots {
			ws = append(ws, keylessRegexWarnings(fmt.Sprintf("%s.trustRoots[%d] (%s)", at, j, r.Name), r)...)
		}
		if v.Cert != "" && v.Type != TypeNotaryV1 {
			ws = append(ws, at+".cert: a private registry CA is not supported by this version yet; the system roots are used")
		}
	}
	if len(p.Alerting) > 0 {
		ws = append(ws, "alerting: not used at the node; refusals are reported as Kubernetes Events on the Pod, "+
			"Prometheus metrics and the audit log (alert on those instead)")
	}
	for i, r := range p.Rules {
		at := fmt.Sprintf("policy[%d] (%s)", i, r.Pattern)
		if v := p.Validator(r.validatorName()); v != nil && v.Type == TypeStatic && !isZeroWith(r.With) {
			ws = append(ws, fmt.Sprintf("%s.with: validator %q is static, so the rule's options are ignored", at, v.Name))
		}
		deny := isDenyRule(p.Validator(r.validatorName()))
		if deny && !hasRegistry(r.Pattern) {
			ws = append(ws, fmt.Sprintf("%s.pattern: a deny rule without a registry is read as %q, the whole image name, "+
				"so it does not deny the name under other registries or paths (\"docker.io/bitnami/redis:7\" for \"redis\"), "+
				"which Connaisseur's match anywhere in the name does; write \"*/%s\" to deny that name anywhere, "+
				"or \"*%s*\" for Connaisseur's meaning", at, normalizePattern(r.Pattern), r.Pattern, r.Pattern))
		}
		// Matching more than meant is the point of a deny rule.
		if !deny && hostWildcard(r.Pattern) {
			ws = append(ws, at+".pattern: a wildcard in the registry part also matches '/', so it matches images of any registry "+
				"whose path ends the same way (\"*.corp.example/*\" matches \"evil.io/x.corp.example/app\"); write one rule per registry host")
		}
		if v := p.Validator(r.validatorName()); v != nil && v.Type == TypeNotation && len(r.With.TrustedIdentities) == 0 {
			ws = append(ws, fmt.Sprintf("%s.with.trustedIdentities: not set, so any certificate issued under validator %q's trust roots may sign "+
				"(Connaisseur's meaning, notation's \"*\"); pin the signer, e.g. trustedIdentities: [\"x509.subject: C=US, ST=WA, O=Example, CN=release\"], "+
				"or write [\"*\"] to keep this", at, v.Name))
		}
		if r.With.Mode != "" {
			ws = append(ws, fmt.Sprintf("%s.with.mode %q: an admission setting, ignored at the node", at, r.With.Mode))
		}
		if (isTrue(r.With.VerifyInTransparencyLog) || isTrue(r.With.VerifySCT)) && selectsKeyRoot(p.Validator(r.validatorName()), r.With) {
			ws = append(ws, at+".with: verifyInTransparencyLog/verifySCT apply to keyless trust roots only; signatures of key-based roots are verified without a log")
		}
	}
	return append(ws, p.tieWarnings()...)
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
	// Qualified, "redis:*" has docker.io for its registry part.
	first, _, _ := strings.Cut(normalizePattern(pattern), "/")
	if !hasWildcard(first) {
		return false
	}
	return strings.Trim(pattern, "*?:@") != ""
}

// nodeLoginSource says where the daemon finds its registry logins.
const nodeLoginSource = "registry credentials come from the node: the docker config given with --docker-config (or the daemon user's own)"

// authWarnings says which of Connaisseur's auth fields are not used here.
func authWarnings(at string, a *Auth) []string {
	if a == nil {
		return nil
	}
	var ws []string
	if a.SecretName != "" {
		ws = append(ws, at+".auth.secretName: not used at the node; "+nodeLoginSource)
	}
	if a.Username != "" || a.Password != "" {
		ws = append(ws, at+".auth.username/password: not used at the node, and better not kept in a policy ConfigMap; "+
			nodeLoginSource+"; put them there")
	}
	if a.UseKeychain {
		ws = append(ws, at+".auth.useKeychain: not used at the node; "+nodeLoginSource)
	}
	return ws
}
