package events

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/nri-image-verifier/nri-image-verifier/gate"
	"github.com/nri-image-verifier/nri-image-verifier/internal/metricstest"
	"github.com/nri-image-verifier/nri-image-verifier/report"
)

const digest = "sha256:0f4a6b7c8d9e0f19a3e5cbcd2c6ac1a7b1cf4b8e3e1b5c0c4f5d7e5f9d2b9c1e"

// fakeSink stores Events by name as the API server would, applying series
// patches, and can be made to fail or to hang.
type fakeSink struct {
	mu      sync.Mutex
	events  map[string]*eventsv1.Event
	creates int
	patches int
	fail    error         // returned by every call when set
	hang    chan struct{} // calls block until it is closed, when set
	changed chan struct{}
}

func newFakeSink() *fakeSink {
	return &fakeSink{events: map[string]*eventsv1.Event{}, changed: make(chan struct{}, 1000)}
}

func (s *fakeSink) wait(ctx context.Context) error {
	if s.hang == nil {
		return nil
	}
	select {
	case <-s.hang:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *fakeSink) Create(ctx context.Context, ev *eventsv1.Event) (*eventsv1.Event, error) {
	if err := s.wait(ctx); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return nil, s.fail
	}
	s.creates++
	if _, ok := s.events[ev.Name]; ok {
		return nil, apierrors.NewAlreadyExists(schema.GroupResource{Group: "events.k8s.io", Resource: "events"}, ev.Name)
	}
	s.events[ev.Name] = ev.DeepCopy()
	s.changed <- struct{}{}
	return ev, nil
}

func (s *fakeSink) Update(ctx context.Context, ev *eventsv1.Event) (*eventsv1.Event, error) {
	return nil, errors.New("update is not used by client-go's events broadcaster")
}

func (s *fakeSink) Patch(ctx context.Context, ev *eventsv1.Event, data []byte) (*eventsv1.Event, error) {
	if err := s.wait(ctx); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return nil, s.fail
	}
	s.patches++
	stored, ok := s.events[ev.Name]
	if !ok {
		return nil, apierrors.NewNotFound(schema.GroupResource{Group: "events.k8s.io", Resource: "events"}, ev.Name)
	}
	var p struct {
		Series *eventsv1.EventSeries `json:"series"`
	}
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, err
	}
	stored.Series = p.Series
	s.changed <- struct{}{}
	return stored, nil
}

func (s *fakeSink) snapshot() []*eventsv1.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*eventsv1.Event
	for _, ev := range s.events {
		out = append(out, ev.DeepCopy())
	}
	return out
}

// waitFor polls the sink until cond holds.
func (s *fakeSink) waitFor(t *testing.T, what string, cond func([]*eventsv1.Event) bool) []*eventsv1.Event {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		evs := s.snapshot()
		if cond(evs) {
			return evs
		}
		select {
		case <-s.changed:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out waiting for %s; have %d events", what, len(evs))
		}
	}
}

var _ Metrics = (*report.Metrics)(nil)

func startEvents(t testing.TB, sink *fakeSink, m *report.Metrics, cfg Config) *Recorder {
	t.Helper()
	cfg.Sink, cfg.Metrics = sink, m
	if cfg.Node == "" {
		cfg.Node = "node-1"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

func podInput(container string) gate.Input {
	return gate.Input{Image: "127.0.0.1:5000/app:v1", Digest: digest, Namespace: "team-a", Pod: "web-0",
		PodUID: "3f6f1c0e-6a57-4f0b-9a49-0c1c7d0f1e11", Container: container}
}

var denied = gate.Decision{Verdict: gate.VerdictDeny, Image: "127.0.0.1:5000/app:v1", Rule: "127.0.0.1:5000/*",
	Validator: "default", Mode: "enforce", Reason: "no cosign signature"}

func TestEventOnDenial(t *testing.T) {
	sink := newFakeSink()
	e := startEvents(t, sink, report.NewMetrics(), Config{Node: "worker-7"})
	in := podInput("app")
	e.Report(in, denied)

	ev := sink.waitFor(t, "the event", func(evs []*eventsv1.Event) bool { return len(evs) == 1 })[0]
	want := map[string][2]string{
		"type":                 {ev.Type, "Warning"},
		"reason":               {ev.Reason, ReasonFailed},
		"action":               {ev.Action, ActionDeny},
		"note":                 {ev.Note, denied.Message(in)},
		"reportingController":  {ev.ReportingController, "nri-image-verifier"},
		"reportingInstance":    {ev.ReportingInstance, "worker-7"},
		"namespace":            {ev.Namespace, "team-a"},
		"regarding.kind":       {ev.Regarding.Kind, "Pod"},
		"regarding.apiVersion": {ev.Regarding.APIVersion, "v1"},
		"regarding.namespace":  {ev.Regarding.Namespace, "team-a"},
		"regarding.name":       {ev.Regarding.Name, "web-0"},
		"regarding.uid":        {string(ev.Regarding.UID), in.PodUID},
		"regarding.fieldPath":  {ev.Regarding.FieldPath, "spec.containers{app}"},
	}
	for field, gw := range want {
		if gw[0] != gw[1] {
			t.Errorf("%s = %q, want %q", field, gw[0], gw[1])
		}
	}
	if !strings.HasPrefix(ev.Name, "web-0.") {
		t.Errorf("event name %q does not start with the pod's name", ev.Name)
	}
}

func TestRepeatedDenialsBecomeOneSeries(t *testing.T) {
	sink := newFakeSink()
	e := startEvents(t, sink, nil, Config{})
	in := podInput("app")
	for range 5 {
		e.Report(in, denied)
	}
	// A second container of the same pod is refused for another reason:
	// it gets its own Event, not a count in the first one's series.
	other := podInput("sidecar")
	e.Report(other, denied)

	evs := sink.waitFor(t, "two events, the first a series", func(evs []*eventsv1.Event) bool {
		if len(evs) != 2 {
			return false
		}
		for _, ev := range evs {
			if ev.Regarding.FieldPath == "spec.containers{app}" && ev.Series != nil {
				return true
			}
		}
		return false
	})
	for _, ev := range evs {
		switch ev.Regarding.FieldPath {
		case "spec.containers{app}":
			// client-go writes count 2 at once and later counts on its
			// series heartbeat, so the API shows at least 2.
			if ev.Series.Count < 2 {
				t.Errorf("series count %d, want >= 2", ev.Series.Count)
			}
		case "spec.containers{sidecar}":
			if ev.Series != nil {
				t.Errorf("sidecar event has a series %+v after one denial", ev.Series)
			}
			if ev.Note != denied.Message(other) {
				t.Errorf("sidecar note %q", ev.Note)
			}
		default:
			t.Errorf("unexpected event regarding %+v", ev.Regarding)
		}
	}
	sink.mu.Lock()
	creates := sink.creates
	sink.mu.Unlock()
	if creates > 3 { // 2 events, plus at most one create racing its own patch
		t.Errorf("%d creates for 6 denials of 2 containers: repeats were not aggregated", creates)
	}
}

func TestPendingAndFinalDenialAreSeparateSeries(t *testing.T) {
	sink := newFakeSink()
	e := startEvents(t, sink, nil, Config{})
	in := podInput("app")
	pendingD := gate.Decision{Verdict: gate.VerdictDeny, Pending: true, Reason: "verification still running"}
	e.Report(in, pendingD)
	e.Report(in, denied)
	evs := sink.waitFor(t, "two events", func(evs []*eventsv1.Event) bool { return len(evs) == 2 })
	notes := map[string]string{}
	for _, ev := range evs {
		if ev.Reason != ReasonFailed {
			t.Errorf("reason %q, want %q", ev.Reason, ReasonFailed)
		}
		notes[ev.Action] = ev.Note
	}
	if notes[ActionDenyPending] != pendingD.Message(in) || notes[ActionDeny] != denied.Message(in) {
		t.Errorf("notes by action: %q", notes)
	}
}

func TestAuditEventAndNoEventForAllow(t *testing.T) {
	sink := newFakeSink()
	m := report.NewMetrics()
	e := startEvents(t, sink, m, Config{})
	e.Report(podInput("ok"), gate.Decision{Allowed: true, Verdict: gate.VerdictAllow})
	audit := gate.Decision{Allowed: true, Verdict: gate.VerdictAuditDeny, Rule: "*", Validator: "default",
		Mode: "audit", Reason: "no cosign signature"}
	e.Report(podInput("audited"), audit)
	// Not in a pod (ctr run): nothing to attach the Event to.
	e.Report(gate.Input{Image: "x", Container: "c"}, denied)

	evs := sink.waitFor(t, "the audit event", func(evs []*eventsv1.Event) bool { return len(evs) >= 1 })
	// Give an Event for the allow a chance to show up, had one been sent.
	time.Sleep(200 * time.Millisecond)
	evs = sink.snapshot()
	if len(evs) != 1 {
		t.Fatalf("got %d events, want only the audit one", len(evs))
	}
	ev := evs[0]
	if ev.Reason != ReasonAudit || ev.Action != ActionAudit || ev.Type != "Warning" {
		t.Errorf("audit event reason %q action %q type %q", ev.Reason, ev.Action, ev.Type)
	}
	if ev.Note != audit.Message(podInput("audited")) || !strings.Contains(ev.Note, "would be denied") {
		t.Errorf("audit note %q", ev.Note)
	}
	if got := counterValue(t, m, "nri_image_verifier_events_dropped_total", map[string]string{"reason": "no_pod"}); got != 1 {
		t.Errorf("events_dropped_total{reason=no_pod} = %v, want 1", got)
	}
}

func TestLongNoteIsCutToTheAPILimit(t *testing.T) {
	sink := newFakeSink()
	e := startEvents(t, sink, nil, Config{Node: strings.Repeat("n", 200)})
	d := denied
	d.Reason = strings.Repeat("é", 2000) // 2 bytes each: the cut must not split one
	e.Report(podInput("app"), d)
	ev := sink.waitFor(t, "the event", func(evs []*eventsv1.Event) bool { return len(evs) == 1 })[0]
	if len(ev.Note) > noteLimit || !strings.HasSuffix(ev.Note, "...") {
		t.Errorf("note of %d bytes, ending %q", len(ev.Note), ev.Note[len(ev.Note)-8:])
	}
	if !strings.HasPrefix(d.Message(podInput("app")), strings.TrimSuffix(ev.Note, "...")) {
		t.Error("the cut note is not a prefix of the message")
	}
	if !strings.ContainsRune(ev.Note[len(ev.Note)-5:], 'é') {
		t.Errorf("note ends in a split rune: %q", ev.Note[len(ev.Note)-6:])
	}
	if len(ev.ReportingInstance) > instanceLimit {
		t.Errorf("reportingInstance of %d bytes", len(ev.ReportingInstance))
	}
}

// TestReportNeverBlocks: with an API server that never answers, a storm of
// refusals must neither slow Report down nor pile up goroutines; the excess
// is dropped and counted.
func TestReportNeverBlocks(t *testing.T) {
	sink := newFakeSink()
	sink.hang = make(chan struct{})
	defer close(sink.hang)
	m := report.NewMetrics()
	e := startEvents(t, sink, m, Config{Queue: 8, Rate: 5, Burst: 5})
	before := runtime.NumGoroutine()

	const n = 20000
	start := time.Now()
	var slowest time.Duration
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			in := podInput("app")
			in.Pod = "web-" + string(rune('a'+i%26))
			t0 := time.Now()
			e.Report(in, denied)
			slowest = max(slowest, time.Since(t0))
		}
	}()
	// The API never answers, so a Report that waited on it would never
	// return: the bound only has to tell "returns" from "blocked forever",
	// not measure speed (BenchmarkReportHungAPI does that),
	// and it must hold under -race on a loaded two-core machine.
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatalf("%d Reports did not return within a minute while the API hangs: Report blocks", n)
	}
	t.Logf("%d Reports in %v (slowest %v)", n, time.Since(start), slowest)

	dropped := counterValue(t, m, "nri_image_verifier_events_dropped_total", map[string]string{"reason": "queue_full"}) +
		counterValue(t, m, "nri_image_verifier_events_dropped_total", map[string]string{"reason": "rate_limited"})
	if dropped < n-100 {
		t.Errorf("dropped %v of %d Events, want nearly all (the API never answers)", dropped, n)
	}
	time.Sleep(100 * time.Millisecond)
	if grown := runtime.NumGoroutine() - before; grown > 100 {
		t.Errorf("%d more goroutines after the storm; the event path is not bounded", grown)
	}
}

func TestFirstFailureLoggedOnce(t *testing.T) {
	sink := newFakeSink()
	sink.fail = errors.New("connection refused")
	var buf syncBuffer
	m := report.NewMetrics()
	e := startEvents(t, sink, m, Config{Logger: slog.New(slog.NewJSONHandler(&buf, nil))})
	for _, c := range []string{"a", "b", "c"} {
		e.Report(podInput(c), denied)
	}
	deadline := time.Now().Add(10 * time.Second)
	for counterValue(t, m, "nri_image_verifier_event_api_writes_total", map[string]string{"result": "error"}) < 3 {
		if time.Now().After(deadline) {
			t.Fatal("the failed writes were not counted")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := strings.Count(buf.String(), "cannot write Kubernetes Events"); got != 1 {
		t.Errorf("failure logged %d times, want once:\n%s", got, buf.String())
	}

	// The API comes back: the recovery is logged, and Events flow again.
	sink.mu.Lock()
	sink.fail = nil
	sink.mu.Unlock()
	e.Report(podInput("d"), denied)
	sink.waitFor(t, "an event after recovery", func(evs []*eventsv1.Event) bool { return len(evs) >= 1 })
	// The sink holds the Event before its write returns, and the recovery
	// is logged after it returns: wait for the line, do not race it.
	deadline = time.Now().Add(10 * time.Second)
	for !strings.Contains(buf.String(), "writing Kubernetes Events again") {
		if time.Now().After(deadline) {
			t.Fatalf("recovery not logged:\n%s", buf.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestNewChecksConfig(t *testing.T) {
	if _, err := New(Config{Node: "n"}); err == nil {
		t.Error("nil sink accepted")
	}
	if _, err := New(Config{Sink: newFakeSink()}); err == nil {
		t.Error("empty node name accepted")
	}
	// Close without Start must not hang.
	e, err := New(Config{Sink: newFakeSink(), Node: "n"})
	if err != nil {
		t.Fatal(err)
	}
	e.Close()
	e.Report(podInput("x"), denied) // after Close: dropped or queued, never blocks
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// counterValue reads a counter (or gauge) of m with exactly labels; 0 when
// it has no such sample.
func counterValue(t *testing.T, m *report.Metrics, name string, labels map[string]string) float64 {
	t.Helper()
	return metricstest.Value(t, m.Registry(), name, labels)
}

// BenchmarkReportHungAPI: the cost of one Report on the NRI path while the
// API server never answers (every Event is queued or dropped).
func BenchmarkReportHungAPI(b *testing.B) {
	sink := newFakeSink()
	sink.hang = make(chan struct{})
	defer close(sink.hang)
	e := startEvents(b, sink, report.NewMetrics(), Config{Queue: 8, Rate: 5, Burst: 5})
	in := podInput("app")
	for b.Loop() {
		e.Report(in, denied)
	}
}
