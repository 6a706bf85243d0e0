package report

import "github.com/nri-image-verifier/nri-image-verifier/gate"

// Reporter records a decision without blocking (plugin.Reporter).
type Reporter interface {
	Report(in gate.Input, d gate.Decision)
}

// Tee hands every decision to each reporter in turn.
type Tee []Reporter

// Report calls Report on each reporter.
func (t Tee) Report(in gate.Input, d gate.Decision) {
	for _, r := range t {
		r.Report(in, d)
	}
}
