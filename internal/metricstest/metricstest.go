// Package metricstest reads Prometheus samples back in tests: the sample
// of a metric with exactly the given labels, or its value. The report
// packages' tests share it; it knows nothing of which metrics there are.
package metricstest

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Sample gathers g and returns the sample of name with exactly labels, or
// nil when there is none.
func Sample(t testing.TB, g prometheus.Gatherer, name string, labels map[string]string) *dto.Metric {
	t.Helper()
	families, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	next:
		for _, s := range f.GetMetric() {
			if len(s.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range s.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue next
				}
			}
			return s
		}
	}
	return nil
}

// Value is the counter's or gauge's value of Sample; 0 when there is no
// such sample.
func Value(t testing.TB, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	s := Sample(t, g, name, labels)
	if s == nil {
		return 0
	}
	if s.GetCounter() != nil {
		return s.GetCounter().GetValue()
	}
	return s.GetGauge().GetValue()
}
