package report

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/nri-image-verifier/nri-image-verifier/gate"
	"github.com/nri-image-verifier/nri-image-verifier/internal/metricstest"
)

// metric finds the sample of name with exactly labels, or nil.
func metric(t *testing.T, m *Metrics, name string, labels map[string]string) *dto.Metric {
	t.Helper()
	return metricstest.Sample(t, m.Registry(), name, labels)
}

func counterValue(t *testing.T, m *Metrics, name string, labels map[string]string) float64 {
	t.Helper()
	return metricstest.Value(t, m.Registry(), name, labels)
}

func TestDecisionMetrics(t *testing.T) {
	m := NewMetrics()
	m.Report(gate.Input{}, gate.Decision{Allowed: true, Verdict: gate.VerdictAllow, Validator: "default", Mode: "enforce",
		CacheHit: true, Latency: 300 * time.Microsecond})
	m.Report(gate.Input{}, gate.Decision{Verdict: gate.VerdictDeny, Validator: "default", Mode: "enforce",
		Latency: 40 * time.Millisecond})
	m.Report(gate.Input{}, gate.Decision{Verdict: gate.VerdictDeny, Validator: "default", Mode: "enforce"})
	m.Report(gate.Input{}, gate.Decision{Allowed: true, Verdict: gate.VerdictAuditDeny, Validator: "v2", Mode: "audit"})

	for _, c := range []struct {
		labels map[string]string
		want   float64
	}{
		{map[string]string{"verdict": "allow", "validator": "default", "mode": "enforce"}, 1},
		{map[string]string{"verdict": "deny", "validator": "default", "mode": "enforce"}, 2},
		{map[string]string{"verdict": "audit-deny", "validator": "v2", "mode": "audit"}, 1},
	} {
		if got := counterValue(t, m, "nri_image_verifier_decisions_total", c.labels); got != c.want {
			t.Errorf("decisions_total%v = %v, want %v", c.labels, got, c.want)
		}
	}
	hit := metric(t, m, "nri_image_verifier_decision_duration_seconds", map[string]string{"cache": "hit"})
	miss := metric(t, m, "nri_image_verifier_decision_duration_seconds", map[string]string{"cache": "miss"})
	if hit.GetHistogram().GetSampleCount() != 1 || miss.GetHistogram().GetSampleCount() != 3 {
		t.Errorf("decision histogram counts: hit %d, miss %d", hit.GetHistogram().GetSampleCount(),
			miss.GetHistogram().GetSampleCount())
	}
	if s := hit.GetHistogram().GetSampleSum(); s < 0.0002 || s > 0.0004 {
		t.Errorf("hit latency sum %v, want 0.0003", s)
	}
}

func TestVerificationReloadAndWatchedMetrics(t *testing.T) {
	m := NewMetrics()
	m.ObserveVerification("default", true, nil, 20*time.Millisecond)
	m.ObserveVerification("default", false, nil, time.Millisecond)
	m.ObserveVerification("default", false, errors.New("registry down"), time.Second)
	for result, want := range map[string]uint64{"allow": 1, "deny": 1, "error": 1} {
		s := metric(t, m, "nri_image_verifier_verification_duration_seconds", map[string]string{"validator": "default", "result": result})
		if s.GetHistogram().GetSampleCount() != want {
			t.Errorf("verification_duration_seconds{result=%s} count %d", result, s.GetHistogram().GetSampleCount())
		}
	}

	m.PolicyReload(nil)
	m.PolicyReload(errors.New("bad yaml"))
	m.PolicyReload(errors.New("bad key"))
	if got := counterValue(t, m, "nri_image_verifier_policy_reloads_total", map[string]string{"result": "failure"}); got != 2 {
		t.Errorf("policy_reloads_total{failure} = %v", got)
	}

	stats := CacheStats{Hits: 7, Misses: 3, Verifications: 2, Pending: 1}
	m.WatchCache(func() CacheStats { return stats }, func() int { return 5 })
	connected := false
	m.WatchNRI(func() bool { return connected })
	for name, want := range map[string]float64{
		"nri_image_verifier_cache_hits_total": 7, "nri_image_verifier_cache_misses_total": 3,
		"nri_image_verifier_verifications_total": 2, "nri_image_verifier_pending_total": 1,
		"nri_image_verifier_cache_entries": 5, "nri_image_verifier_nri_connected": 0,
	} {
		if got := counterValue(t, m, name, nil); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	// Read at scrape time, not at registration.
	stats.Hits, connected = 8, true
	if got := counterValue(t, m, "nri_image_verifier_cache_hits_total", nil); got != 8 {
		t.Errorf("cache_hits_total after a hit = %v, want 8", got)
	}
	if got := counterValue(t, m, "nri_image_verifier_nri_connected", nil); got != 1 {
		t.Errorf("nri_connected = %v, want 1", got)
	}
}

func TestRegistryTransportMetrics(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v2/":
			w.WriteHeader(http.StatusOK)
		case "/v2/busy":
			w.WriteHeader(http.StatusTooManyRequests)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer srv.Close()
	m := NewMetrics()
	c := &http.Client{Transport: m.Transport(http.DefaultTransport)}
	host := strings.TrimPrefix(srv.URL, "http://")
	for _, p := range []string{"/v2/", "/v2/", "/v2/busy", "/v2/missing"} {
		resp, err := c.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	// A registry that is not there at all.
	if _, err := c.Get("http://127.0.0.1:1/v2/"); err == nil {
		t.Fatal("request to port 1 succeeded")
	}
	for code, want := range map[string]float64{"200": 2, "429": 1, "404": 1} {
		if got := counterValue(t, m, "nri_image_verifier_registry_requests_total", map[string]string{"registry": host, "code": code}); got != want {
			t.Errorf("registry_requests_total{code=%s} = %v, want %v", code, got, want)
		}
	}
	if got := counterValue(t, m, "nri_image_verifier_registry_errors_total", map[string]string{"registry": host}); got != 1 {
		t.Errorf("registry_errors_total = %v, want 1 (the 429; a 404 is an answer)", got)
	}
	if got := counterValue(t, m, "nri_image_verifier_registry_requests_total", map[string]string{"registry": "127.0.0.1:1", "code": "error"}); got != 1 {
		t.Errorf("registry_requests_total{code=error} = %v, want 1", got)
	}
}

func TestNilMetricsAreInert(t *testing.T) {
	var m *Metrics
	m.Report(gate.Input{}, gate.Decision{})
	m.PolicyReload(nil)
	m.ObserveVerification("v", false, nil, 0)
	m.WatchCache(nil, nil)
	m.WatchNRI(nil)
	m.EventDropped("x")
	m.EventWrite(nil)
	if rt := m.Transport(http.DefaultTransport); rt != http.DefaultTransport {
		t.Error("nil Metrics wrapped the transport")
	}
}

func TestTee(t *testing.T) {
	a, b := NewMetrics(), NewMetrics()
	Tee{a, b}.Report(gate.Input{}, gate.Decision{Verdict: gate.VerdictDeny, Validator: "v", Mode: "enforce"})
	for _, m := range []*Metrics{a, b} {
		if got := counterValue(t, m, "nri_image_verifier_decisions_total", map[string]string{"verdict": "deny", "validator": "v", "mode": "enforce"}); got != 1 {
			t.Errorf("tee'd reporter counted %v", got)
		}
	}
}
