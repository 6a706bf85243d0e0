package registry

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
)

// ErrPlainHTTP is returned for a request that would go without TLS to a
// registry that is not on this node.
var ErrPlainHTTP = errors.New("plain HTTP refused")

// plainHTTPAllowed says whether req may go without TLS. go-containerregistry
// picks plain HTTP by the look of a name (RFC 1918 addresses, "*.localhost")
// and races it against HTTPS: a man in the middle at a private address then
// gets the node's credentials in clear and chooses what the registry says.
// Signatures would still be checked, but credentials are not ours to give
// away, so plain HTTP goes only to loopback, where nothing crosses a
// network. Redirects pass through here too, so none can lead away to plain
// HTTP elsewhere.
func plainHTTPAllowed(req *http.Request) error {
	if req.URL.Scheme != "http" || isLoopback(req.URL.Host) {
		return nil
	}
	return fmt.Errorf("%w to %s: registries off this node are reached over HTTPS only, so that no credential or content crosses the network in clear", ErrPlainHTTP, req.URL.Host)
}

// isLoopback reports whether hostport names this node by address or as
// "localhost": 127.0.0.0/8 or ::1. Other names, "*.localhost" among them,
// resolve through DNS, which can point them anywhere.
func isLoopback(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	// Only this spelling: Go's proxy settings exempt exactly "localhost",
	// so "LOCALHOST" would go to an HTTP_PROXY, in clear.
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
