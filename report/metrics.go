package report

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/nri-image-verifier/nri-image-verifier/gate"
)

const namespace = "nri_image_verifier"

// Metrics are the daemon's Prometheus metrics, on a registry of their own
// (the process and Go collectors included) rather than the global one, so
// that what /metrics serves is exactly what is listed here. A nil *Metrics
// is valid and counts nothing, so components can take one optionally.
type Metrics struct {
	reg *prometheus.Registry

	decisions        *prometheus.CounterVec
	decisionSeconds  *prometheus.HistogramVec
	verifySeconds    *prometheus.HistogramVec
	registryRequests *prometheus.CounterVec
	registryErrors   *prometheus.CounterVec
	policyReloads    *prometheus.CounterVec
	eventsDropped    *prometheus.CounterVec
	eventWrites      *prometheus.CounterVec
}

// NewMetrics registers the metrics on a new registry.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "decisions_total",
			Help: "Container decisions by verdict (allow, deny, audit-deny), validator and mode.",
		}, []string{"verdict", "validator", "mode"}),
		// The hook's own latency: a cache lookup in the common case, the
		// NRI deadline at worst. Buckets from 50us to the 2s NRI default.
		decisionSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "decision_duration_seconds",
			Help:    "Time to decide on one container, by whether the verdict came from the cache.",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 1.5, 2},
		}, []string{"cache"}),
		// One verification by a validator (registry round trips and
		// signature checks), which may outlive the NRI request.
		verifySeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "verification_duration_seconds",
			Help:    "Time of one verification by a validator, by result (allow, deny, error).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"validator", "result"}),
		registryRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "registry_requests_total",
			Help: "HTTP requests to registries by host and status code (\"error\" when no response came).",
		}, []string{"registry", "code"}),
		registryErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "registry_errors_total",
			Help: "Registry requests that failed: no response, 429 or 5xx.",
		}, []string{"registry"}),
		policyReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "policy_reloads_total",
			Help: "Policy file reloads by result (success, failure; a failure keeps the last good policy).",
		}, []string{"result"}),
		eventsDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "events_dropped_total",
			Help: "Kubernetes Events not recorded, by reason (queue_full, rate_limited, no_pod).",
		}, []string{"reason"}),
		eventWrites: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "event_api_writes_total",
			Help: "Event writes to the API server by result (ok, error).",
		}, []string{"result"}),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.decisions, m.decisionSeconds, m.verifySeconds, m.registryRequests, m.registryErrors,
		m.policyReloads, m.eventsDropped, m.eventWrites,
	)
	// Pre-create the label values a dashboard alerts on, so that "none so
	// far" reads 0 rather than "no data".
	for _, r := range []string{"success", "failure"} {
		m.policyReloads.WithLabelValues(r)
	}
	for _, r := range []string{"queue_full", "rate_limited", "no_pod"} {
		m.eventsDropped.WithLabelValues(r)
	}
	return m
}

// Registry is where the metrics live, for the HTTP handler and for tests.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Report counts one decision. It is on the NRI request path and only
// touches atomic counters.
func (m *Metrics) Report(_ gate.Input, d gate.Decision) {
	if m == nil {
		return
	}
	m.decisions.WithLabelValues(string(d.Verdict), d.Validator, string(d.Mode)).Inc()
	cache := "miss"
	if d.CacheHit {
		cache = "hit"
	}
	m.decisionSeconds.WithLabelValues(cache).Observe(d.Latency.Seconds())
}

// ObserveVerification records one validator run: allowed is its verdict,
// err a failure to reach one.
func (m *Metrics) ObserveVerification(validator string, allowed bool, err error, took time.Duration) {
	if m == nil {
		return
	}
	result := "deny"
	switch {
	case err != nil:
		result = "error"
	case allowed:
		result = "allow"
	}
	m.verifySeconds.WithLabelValues(validator, result).Observe(took.Seconds())
}

// PolicyReload counts a policy reload; err is why it was rejected.
func (m *Metrics) PolicyReload(err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.policyReloads.WithLabelValues("failure").Inc()
		return
	}
	m.policyReloads.WithLabelValues("success").Inc()
}

// CacheStats are the verdict cache's counters (verify.CacheStats, which the
// daemon converts: report knows no verify types).
type CacheStats struct {
	Hits, Misses, Verifications, Pending uint64
	Shed, Busy                           uint64
}

// WatchCache exports the verdict cache's counters, read at scrape time.
func (m *Metrics) WatchCache(stats func() CacheStats, entries func() int) {
	if m == nil {
		return
	}
	counter := func(name, help string, get func(CacheStats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help},
			func() float64 { return float64(get(stats())) })
	}
	m.reg.MustRegister(
		counter("cache_hits_total", "Verdict cache lookups answered from the cache.",
			func(s CacheStats) uint64 { return s.Hits }),
		counter("cache_misses_total", "Verdict cache lookups that had to join or start a verification.",
			func(s CacheStats) uint64 { return s.Misses }),
		counter("verifications_total", "Verifications started (one per cache key at a time).",
			func(s CacheStats) uint64 { return s.Verifications }),
		counter("pending_total", "Lookups that gave up at the deadline while verification went on.",
			func(s CacheStats) uint64 { return s.Pending }),
		counter("pending_shed_total", "Lookups answered pending at once, without waiting, because their verification, or another of the same registry or namespace, was already overdue (a slow registry must not hold the runtime's NRI lock).",
			func(s CacheStats) uint64 { return s.Shed }),
		counter("verifications_busy_total", "Lookups refused because the node's limit of verifications in flight was reached.",
			func(s CacheStats) uint64 { return s.Busy }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: "cache_entries",
			Help: "Verdicts held in the cache."}, func() float64 { return float64(entries()) }),
	)
}

// WatchNRI exports whether the plugin is registered with the runtime.
func (m *Metrics) WatchNRI(connected func() bool) {
	if m == nil {
		return
	}
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: namespace, Name: "nri_connected",
		Help: "1 while the plugin is registered with the container runtime over NRI, else 0.",
	}, func() float64 {
		if connected() {
			return 1
		}
		return 0
	}))
}

// EventDropped counts a Kubernetes Event not recorded (events.Metrics).
func (m *Metrics) EventDropped(reason string) {
	if m == nil {
		return
	}
	m.eventsDropped.WithLabelValues(reason).Inc()
}

// EventWrite counts one Event write to the API server (events.Metrics).
func (m *Metrics) EventWrite(err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.eventWrites.WithLabelValues("error").Inc()
		return
	}
	m.eventWrites.WithLabelValues("ok").Inc()
}
