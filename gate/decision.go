package gate

import (
	"time"

	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/nri-image-verifier/nri-image-verifier/verify"
)

// Input identifies the container whose image is checked.
type Input struct {
	// Image is the image name the runtime resolved, e.g.
	// "127.0.0.1:5000/app:v1" or "docker.io/library/redis:7". Used only to
	// find the repository and the policy rule; never trusted for the digest.
	Image string
	// Digest is the top-level image digest the runtime uses ("sha256:...").
	Digest string
	// ConfigDigest is the image config digest, if known.
	ConfigDigest string

	// Requested is the image as the container's spec asked for it (the
	// CRI image-name annotation), when it names another record than Image:
	// see plugin's resolve. Never trusted for a digest.
	Requested string
	// DigestError says why Digest is empty when the runtime sent none and
	// resolving it failed (the refusal quotes it).
	DigestError string
	// Volume is the mount destination of the image volume whose image this
	// is, "" for the container's own image. It only names what is checked.
	Volume string

	Namespace string
	Pod       string
	PodUID    string
	Container string
	// ContainerID is the runtime's ID of the container.
	ContainerID string
}

// Verdict is the gate's answer in one word, as Decision.Verdict, the audit
// log and the metrics write it.
type Verdict string

// The verdicts.
const (
	VerdictAllow Verdict = "allow"
	VerdictDeny  Verdict = "deny"
	// VerdictAuditDeny: the policy failed but the rule is in audit mode, so
	// the container is allowed.
	VerdictAuditDeny Verdict = "audit-deny"
)

// Decision is the gate's answer.
type Decision struct {
	// Allowed is what the runtime must do.
	Allowed bool
	// Verdict is one of the Verdict* constants.
	Verdict Verdict
	// Reason is one line an operator can act on.
	Reason string
	// Pending is true when verification was still running at the deadline.
	Pending bool

	Image     string      // normalised image reference the rule was matched on
	Rule      string      // matched rule pattern, "" if none
	Validator string      // validator name, "" if none
	Mode      policy.Mode // effective mode

	CacheHit bool
	Latency  time.Duration
}

// ErrAbandoned is the cause to cancel a Decide's context with when its
// answer is no longer needed (another decision settled the question): the
// verification goes on, and is not counted overdue (see verify.ErrAbandoned).
var ErrAbandoned = verify.ErrAbandoned
