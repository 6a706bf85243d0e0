package plugin

import (
	"fmt"
	"strings"
	"unicode"

	"github.com/nri-image-verifier/nri-image-verifier/gate"
)

// verdictError turns a decision into the runtime's answer: nil to allow
// (audit-mode denials included), an error to refuse. The error message ends
// up, one line, in kubelet's CreateContainerError event, so it names what an
// operator needs: image, digest, rule, validator, reason.
//
// Allowed is authoritative, as the gate's contract says; Pending only picks
// the message. A zero Decision denies.
func verdictError(in gate.Input, d gate.Decision) error {
	if d.Allowed {
		return nil
	}
	if d.Pending {
		return pendingError(in, d.Image, d.Reason)
	}
	return fmt.Errorf("nri-image-verifier: image %s (%s) denied by rule %q (validator %s): %s",
		imageOf(in, d.Image), digestOf(in), d.Rule, orNone(oneLine(d.Validator)),
		orNone(oneLine(d.Reason)))
}

// pendingError refuses a container whose verification did not finish in
// time; kubelet retries the creation on a later pod sync, by which time the
// verdict is usually cached.
func pendingError(in gate.Input, image, reason string) error {
	return fmt.Errorf("nri-image-verifier: image %s (%s): verification still running (%s); will be retried",
		imageOf(in, image), digestOf(in), orNone(oneLine(reason)))
}

// imageOf prefers the gate's normalised reference over the runtime's name.
func imageOf(in gate.Input, normalised string) string {
	if normalised != "" {
		return oneLine(normalised)
	}
	if in.Image != "" {
		return oneLine(in.Image)
	}
	return "<unknown>"
}

func digestOf(in gate.Input) string {
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
