package report

import (
	"net/http"
	"strconv"
)

// Transport counts the registry requests that pass through next, by host
// and status code. It goes in registry.Options.Transport, below the
// registry client's own caps and timeouts, so it sees every request the
// validators make, token requests to auth servers included.
func (m *Metrics) Transport(next http.RoundTripper) http.RoundTripper {
	if m == nil {
		return next
	}
	return countingTransport{next: next, m: m}
}

type countingTransport struct {
	next http.RoundTripper
	m    *Metrics
}

func (t countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	host := req.URL.Host
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		t.m.registryRequests.WithLabelValues(host, "error").Inc()
		t.m.registryErrors.WithLabelValues(host).Inc()
		return resp, err
	}
	t.m.registryRequests.WithLabelValues(host, strconv.Itoa(resp.StatusCode)).Inc()
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
		t.m.registryErrors.WithLabelValues(host).Inc()
	}
	return resp, nil
}
