package events

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/rest"
	clientevents "k8s.io/client-go/tools/events"

	eventsv1client "k8s.io/client-go/kubernetes/typed/events/v1"
)

// NewSink returns the sink that writes Events through the API server
// described by cfg (see RESTConfig). Requests are bounded in time, so a hung
// API server ties up client-go's retrying goroutines for seconds, not for
// ever.
func NewSink(cfg *rest.Config) (clientevents.EventSink, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.UserAgent = Controller
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	c, err := eventsv1client.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("events client: %w", err)
	}
	return &clientevents.EventSinkImpl{Interface: c}, nil
}

// instanceSink sits between client-go's broadcaster and the API. It sets
// reportingInstance to the node name (client-go's recorder would use
// "<controller>-<hostname>", and a pod's host name is the pod's name),
// counts writes, and logs the first failure and the recovery instead of
// every retry.
type instanceSink struct {
	next     clientevents.EventSink
	instance string
	metrics  Metrics
	log      *slog.Logger

	mu      sync.Mutex
	failing bool
}

func (s *instanceSink) Create(ctx context.Context, ev *eventsv1.Event) (*eventsv1.Event, error) {
	ev.ReportingInstance = s.instance
	out, err := s.next.Create(ctx, ev)
	s.done(err)
	return out, err
}

func (s *instanceSink) Update(ctx context.Context, ev *eventsv1.Event) (*eventsv1.Event, error) {
	ev.ReportingInstance = s.instance
	out, err := s.next.Update(ctx, ev)
	s.done(err)
	return out, err
}

// Patch only ever carries a series update; the instance was set at Create.
func (s *instanceSink) Patch(ctx context.Context, ev *eventsv1.Event, data []byte) (*eventsv1.Event, error) {
	out, err := s.next.Patch(ctx, ev, data)
	s.done(err)
	return out, err
}

func (s *instanceSink) done(err error) {
	// client-go handles both: a series whose Event expired is created
	// again, and a create that lost a race with its own series patch is
	// dropped. Neither means the API is out of reach.
	if apierrors.IsNotFound(err) || apierrors.IsAlreadyExists(err) {
		err = nil
	}
	s.metrics.EventWrite(err)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case err != nil && !s.failing:
		s.failing = true
		s.log.Warn("cannot write Kubernetes Events; containers are still checked and every decision is in the audit log",
			"error", err.Error())
	case err == nil && s.failing:
		s.failing = false
		s.log.Info("writing Kubernetes Events again")
	}
}
