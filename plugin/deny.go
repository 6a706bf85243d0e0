package plugin

import (
	"errors"

	"github.com/nri-image-verifier/nri-image-verifier/gate"
)

// verdictError turns a decision into the runtime's answer: nil to allow
// (audit-mode denials included), an error to refuse. The message is
// gate.Decision.Message, the same line the Kubernetes Event carries; it ends
// up in kubelet's CreateContainerError.
func verdictError(in gate.Input, d gate.Decision) error {
	if d.Allowed {
		return nil
	}
	return errors.New(d.Message(in))
}

// pendingError refuses a container whose verification did not finish in
// time; kubelet retries the creation on a later pod sync, by which time the
// verdict is usually cached.
func pendingError(in gate.Input, image, reason string) error {
	return verdictError(in, gate.Decision{Verdict: gate.VerdictDeny, Pending: true, Image: image, Reason: reason})
}
