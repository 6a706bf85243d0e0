package report

import "testing"

func TestWatchRegistryBudget(t *testing.T) {
	m := NewMetrics()
	s := RegistryBudget{InUse: 1 << 20, Limit: 32 << 20, Refused: 3}
	m.WatchRegistryBudget(func() RegistryBudget { return s })
	for name, want := range map[string]float64{
		"nri_image_verifier_registry_body_bytes_in_use":         1 << 20,
		"nri_image_verifier_registry_body_budget_bytes":         32 << 20,
		"nri_image_verifier_registry_body_budget_refused_total": 3,
	} {
		if got := counterValue(t, m, name, nil); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	s.InUse = 0 // read at scrape time
	if got := counterValue(t, m, "nri_image_verifier_registry_body_bytes_in_use", nil); got != 0 {
		t.Errorf("in use after the bodies ended = %v", got)
	}
	var none *Metrics
	none.WatchRegistryBudget(nil) // no metrics: nothing to do
}
