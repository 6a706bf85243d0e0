// Package events records refusals as Kubernetes Events on the Pod, through
// client-go's events machinery. It is the only reporter that talks to the
// Kubernetes API, and so the only one that links client-go: the audit log
// and the metrics (package report) do not need it. Like every reporter it
// is called on the NRI request path and never blocks. It knows nothing of
// NRI or signatures: it turns a gate.Decision into an Event.
package events

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"unicode/utf8"

	"github.com/go-logr/logr"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/scheme"
	clientevents "k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"

	"github.com/nri-image-verifier/nri-image-verifier/gate"
)

// Event fields. Operators filter on the reasons (`kubectl get events
// --field-selector reason=ImageVerificationFailed`), so they are API.
const (
	// Controller is the Events' reportingController.
	Controller = "nri-image-verifier"
	// ReasonFailed marks a container the gate refused.
	ReasonFailed = "ImageVerificationFailed"
	// ReasonAudit marks a container an audit-mode rule would have refused.
	ReasonAudit = "ImageVerificationAudit"

	// Actions. They are part of client-go's series key, so a container
	// refused first as "still verifying" and then for good gets two series,
	// and the final reason is not hidden behind the first note of a series.
	ActionDeny        = "Deny"
	ActionDenyPending = "DenyPending"
	ActionAudit       = "Audit"

	// Limits of the events.k8s.io API validation: an Event over them is
	// rejected whole, so longer fields are cut instead.
	noteLimit     = 1024
	instanceLimit = 128
)

// Defaults for Config fields left zero.
const (
	DefaultQueue = 256
	// DefaultRate and DefaultBurst bound the Events handed to client-go per
	// second. client-go starts a goroutine per Event that retries for
	// minutes while the API server is unreachable; the rate bounds how many
	// such goroutines a storm of refusals can leave.
	DefaultRate  = 10
	DefaultBurst = 50
)

// Metrics counts what becomes of Events; *report.Metrics is one.
type Metrics interface {
	// EventDropped counts an Event not recorded, by reason.
	EventDropped(reason string)
	// EventWrite counts one write to the API server; err is its failure.
	EventWrite(err error)
}

// Config configures a Recorder.
type Config struct {
	// Sink writes Events to the API server (see NewSink).
	Sink clientevents.EventSink
	// Node names this node; it is every Event's reportingInstance.
	Node string
	// Queue is how many Events may wait for the writer; more are dropped.
	Queue int
	// Rate and Burst bound Events per second handed to client-go; more are
	// dropped.
	Rate  float64
	Burst int
	// Metrics, if set, counts dropped Events and API writes.
	Metrics Metrics
	// Logger receives the first failure to write Events, and the recovery.
	Logger *slog.Logger
}

// Recorder turns refusals into Kubernetes Events on the Pod, through
// client-go's events machinery (k8s.io/client-go/tools/events), which
// aggregates repeats of the same container into one Event series. Report
// only queues: a full queue drops the Event and counts it, so the NRI hook
// never waits on the API server.
type Recorder struct {
	cfg      Config
	queue    chan pending
	limit    *rate.Limiter
	bcast    clientevents.EventBroadcaster
	recorder clientevents.EventRecorder

	startOnce sync.Once
	stopOnce  sync.Once
	cancel    context.CancelFunc
	done      chan struct{}
}

// pending is one Event waiting for the writer.
type pending struct {
	regarding                 corev1.ObjectReference
	eventType, reason, action string
	note                      string
}

// New checks cfg and returns a Recorder that records nothing until Start.
func New(cfg Config) (*Recorder, error) {
	if cfg.Sink == nil {
		return nil, errors.New("events: nil Sink")
	}
	if cfg.Node == "" {
		return nil, errors.New("events: empty node name (the Events' reportingInstance)")
	}
	if cfg.Queue <= 0 {
		cfg.Queue = DefaultQueue
	}
	if cfg.Rate <= 0 {
		cfg.Rate = DefaultRate
	}
	if cfg.Burst <= 0 {
		cfg.Burst = DefaultBurst
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = noMetrics{}
	}
	sink := &instanceSink{
		next:     cfg.Sink,
		instance: truncate(cfg.Node, instanceLimit),
		metrics:  cfg.Metrics,
		log:      cfg.Logger.With("component", "events"),
	}
	bcast := clientevents.NewBroadcaster(sink)
	return &Recorder{
		cfg:      cfg,
		queue:    make(chan pending, cfg.Queue),
		limit:    rate.NewLimiter(rate.Limit(cfg.Rate), cfg.Burst),
		bcast:    bcast,
		recorder: bcast.NewRecorder(scheme.Scheme, Controller),
		done:     make(chan struct{}),
	}, nil
}

// Start begins writing Events until ctx is done or Close is called.
func (e *Recorder) Start(ctx context.Context) error {
	var err error
	e.startOnce.Do(func() {
		ctx, e.cancel = context.WithCancel(ctx)
		// client-go logs every failed write, with retries, through the
		// context's logger; the sink logs the first failure and the
		// recovery instead, so a down API server does not flood the log.
		rctx := klog.NewContext(ctx, logr.Discard())
		if err = e.bcast.StartRecordingToSinkWithContext(rctx); err != nil {
			e.cancel()
			close(e.done)
			return
		}
		go e.write(ctx)
	})
	return err
}

// Close stops writing Events. Events still queued or being retried are
// lost: refusals are also in the audit log.
func (e *Recorder) Close() {
	e.stopOnce.Do(func() {
		e.startOnce.Do(func() { close(e.done) }) // never started
		if e.cancel != nil {
			e.cancel()
		}
		<-e.done
		e.bcast.Shutdown()
	})
}

// Report queues an Event for a refusal or an audit-mode would-be refusal of
// a container in a Kubernetes pod, and does nothing for an allow. It never
// blocks.
func (e *Recorder) Report(in gate.Input, d gate.Decision) {
	var ev pending
	switch {
	case !d.Allowed && d.Pending:
		ev.eventType, ev.reason, ev.action = corev1.EventTypeWarning, ReasonFailed, ActionDenyPending
	case !d.Allowed:
		ev.eventType, ev.reason, ev.action = corev1.EventTypeWarning, ReasonFailed, ActionDeny
	case d.Verdict == gate.VerdictAuditDeny:
		// Warning too: an audit rollout is when operators look for the
		// images that would be refused, and they filter on Warning.
		ev.eventType, ev.reason, ev.action = corev1.EventTypeWarning, ReasonAudit, ActionAudit
	default:
		return
	}
	// Containers outside Kubernetes pods (ctr, nerdctl) have no Pod to
	// attach an Event to; the audit log has them.
	if in.Namespace == "" || in.Pod == "" || in.PodUID == "" {
		e.cfg.Metrics.EventDropped("no_pod")
		return
	}
	ev.regarding = corev1.ObjectReference{
		APIVersion: "v1",
		Kind:       "Pod",
		Namespace:  in.Namespace,
		Name:       in.Pod,
		UID:        types.UID(in.PodUID),
	}
	if in.Container != "" {
		// Part of client-go's series key: each container of a pod has its
		// own series. NRI does not say whether it is an init container, so
		// the path is always that of a regular one.
		ev.regarding.FieldPath = "spec.containers{" + in.Container + "}"
	}
	ev.note = truncate(d.Message(in), noteLimit)
	select {
	case e.queue <- ev:
	default:
		e.cfg.Metrics.EventDropped("queue_full")
	}
}

// write hands queued Events to client-go, within the rate limit.
func (e *Recorder) write(ctx context.Context) {
	defer close(e.done)
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-e.queue:
			if !e.limit.Allow() {
				e.cfg.Metrics.EventDropped("rate_limited")
				continue
			}
			e.recorder.Eventf(&ev.regarding, nil, ev.eventType, ev.reason, ev.action, "%s", ev.note)
		}
	}
}

// truncate cuts s to at most n bytes on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "..."
	cut := n - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

// noMetrics counts nothing, for a Config without Metrics.
type noMetrics struct{}

func (noMetrics) EventDropped(string) {}
func (noMetrics) EventWrite(error)    {}
