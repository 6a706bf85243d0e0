package gate

import (
	"fmt"
	"strings"
	"unicode"
)

// Message is the one line that explains a refusal, or an audit-mode
// would-be refusal, of the container in: "" for a plain allow. The runtime's
// error (and so kubelet's CreateContainerError) and the Kubernetes Event
// carry exactly this text, so an operator finds the same words in `kubectl
// describe pod` whichever they look at. It names what an operator needs:
// image, digest, rule, validator, reason.
//
// Allowed is authoritative, as the gate's contract says; Pending only picks
// the wording. A zero Decision denies.
func (d Decision) Message(in Input) string {
	what := "nri-image-verifier: image"
	if in.Volume != "" {
		// The container's own image passed; say which of its volumes did not.
		what = "nri-image-verifier: image volume " + oneLine(in.Volume) + ": image"
	}
	switch {
	case !d.Allowed && d.Pending:
		return fmt.Sprintf("%s %s (%s): verification still running (%s); will be retried", what,
			imageOf(in, d.Image), digestOf(in), orNone(oneLine(d.Reason)))
	case !d.Allowed:
		return fmt.Sprintf("%s %s (%s) denied by rule %q (validator %s): %s", what,
			imageOf(in, d.Image), digestOf(in), d.Rule, orNone(oneLine(d.Validator)), orNone(oneLine(d.Reason)))
	case d.Verdict == VerdictAuditDeny:
		return fmt.Sprintf("%s %s (%s) would be denied by rule %q (validator %s, audit mode, allowed): %s", what,
			imageOf(in, d.Image), digestOf(in), d.Rule, orNone(oneLine(d.Validator)), orNone(oneLine(d.Reason)))
	}
	return ""
}

// imageOf prefers the gate's normalised reference over the runtime's name.
func imageOf(in Input, normalised string) string {
	if normalised != "" {
		return oneLine(normalised)
	}
	if in.Image != "" {
		return oneLine(in.Image)
	}
	return "<unknown>"
}

func digestOf(in Input) string {
	if in.Digest == "" {
		return "digest unknown"
	}
	return oneLine(in.Digest)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// oneLine replaces control characters, which the image annotation or a
// validator's error could carry, so the message stays one line.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.In(r, unicode.Zl, unicode.Zp) {
			return ' '
		}
		return r
	}, s)
}
