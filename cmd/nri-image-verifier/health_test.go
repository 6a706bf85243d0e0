package main

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nri-image-verifier/nri-image-verifier/gate"
	"github.com/nri-image-verifier/nri-image-verifier/report"
)

func TestHealthHandler(t *testing.T) {
	m := report.NewMetrics()
	m.Report(gate.Input{}, gate.Decision{Verdict: gate.VerdictDeny, Validator: "default", Mode: "enforce"})
	var notReady error = errors.New("not registered with NRI")
	srv := httptest.NewServer(healthHandler(m, func() error { return notReady }))
	defer srv.Close()

	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz %d", code)
	}
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "not registered with NRI") {
		t.Errorf("/readyz while unready: %d %q", code, body)
	}
	notReady = nil
	if code, _ := get("/readyz"); code != 200 {
		t.Errorf("/readyz when ready: %d", code)
	}
	code, body := get("/metrics")
	if code != 200 {
		t.Fatalf("/metrics %d", code)
	}
	for _, want := range []string{
		`nri_image_verifier_decisions_total{mode="enforce",validator="default",verdict="deny"} 1`,
		`nri_image_verifier_events_dropped_total{reason="queue_full"} 0`,
		`nri_image_verifier_policy_reloads_total{result="failure"} 0`,
		"go_goroutines", "process_cpu_seconds_total",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
