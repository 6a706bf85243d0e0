package report

import "github.com/prometheus/client_golang/prometheus"

// RegistryBudget is the registry client's node-wide budget for response
// bodies being read (verify/registry's BodyBudgetStats).
type RegistryBudget struct {
	InUse, Limit int64
	Refused      uint64
}

// WatchRegistryBudget exports the body budget, read at scrape time: how
// close a registry (a hostile one, or a burst of large attestations)
// brings the node to refusing reads, and how many it refused.
func (m *Metrics) WatchRegistryBudget(stats func() RegistryBudget) {
	if m == nil {
		return
	}
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: "registry_body_bytes_in_use",
			Help: "Bytes of registry response bodies being read now, by all verifications (--registry-body-budget bounds them)."},
			func() float64 { return float64(stats().InUse) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: "registry_body_budget_bytes",
			Help: "The node-wide budget for registry response bodies being read (--registry-body-budget)."},
			func() float64 { return float64(stats().Limit) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: namespace, Name: "registry_body_budget_refused_total",
			Help: "Registry body reads refused because the budget was spent; each fails its verification, which is retried after the error TTL."},
			func() float64 { return float64(stats().Refused) }),
	)
}
