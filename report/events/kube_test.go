package events

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestRESTConfig(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
	if _, err := RESTConfig(""); !errors.Is(err, ErrNoAPI) {
		t.Errorf("outside a cluster, no kubeconfig: got %v, want ErrNoAPI", err)
	}

	dir := t.TempDir()
	if _, err := RESTConfig(filepath.Join(dir, "missing")); err == nil || errors.Is(err, ErrNoAPI) {
		t.Errorf("missing kubeconfig: got %v, want an error naming it", err)
	}
	kc := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kc, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: abc}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := RESTConfig(kc)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "https://127.0.0.1:6443" || cfg.BearerToken != "abc" {
		t.Errorf("config from kubeconfig: host %q token %q", cfg.Host, cfg.BearerToken)
	}
}
