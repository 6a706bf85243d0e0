// Package report records decisions: a JSON audit line per decision and
// Prometheus metrics (decisions, verifications, registry requests, the
// verdict cache, policy reloads, Events). Every Reporter is called on the
// NRI request path and must not block. It knows nothing of signatures (it
// counts what gate and the daemon tell it) nor of the Kubernetes API: the
// Events on the Pod are report/events. The HTTP health endpoints are the
// daemon's (cmd/nri-image-verifier).
package report

import (
	"context"
	"io"
	"log/slog"

	"github.com/nri-image-verifier/nri-image-verifier/gate"
)

// Audit writes one JSON line per decision.
type Audit struct {
	log  *slog.Logger
	node string
}

// NewAudit writes JSON lines to w. node names this node in every line.
func NewAudit(w io.Writer, node string) *Audit {
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo})
	return &Audit{log: slog.New(h), node: node}
}

// Report writes the audit line for one decision. Denials are logged at
// warning level so that a log pipeline can pick them out cheaply.
func (a *Audit) Report(in gate.Input, d gate.Decision) {
	level := slog.LevelInfo
	if !d.Allowed || d.Verdict == gate.VerdictAuditDeny {
		level = slog.LevelWarn
	}
	attrs := []slog.Attr{
		slog.String("node", a.node),
		slog.String("namespace", in.Namespace),
		slog.String("pod", in.Pod),
		slog.String("pod_uid", in.PodUID),
		slog.String("container", in.Container),
		slog.String("image", in.Image),
		slog.String("digest", in.Digest),
		slog.String("config_digest", in.ConfigDigest),
		slog.String("rule", d.Rule),
		slog.String("validator", d.Validator),
		slog.String("mode", string(d.Mode)),
		slog.String("verdict", string(d.Verdict)),
		slog.Bool("allowed", d.Allowed),
		slog.Bool("pending", d.Pending),
		slog.String("reason", d.Reason),
		slog.Float64("latency_ms", float64(d.Latency.Microseconds())/1000),
		slog.Bool("cache_hit", d.CacheHit),
	}
	if in.Volume != "" {
		// The image of an image volume: one line per image the container
		// gets, this one naming the mount.
		attrs = append(attrs, slog.String("volume", in.Volume))
	}
	a.log.LogAttrs(context.Background(), level, "image decision", attrs...)
}
