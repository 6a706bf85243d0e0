// Package kube tests what the plugin does with Kubernetes against a real
// kube-apiserver and etcd (internal/kubetest), built from the Go module
// proxy (tools/kube) and started on loopback with token authentication and
// RBAC: the chart's ServiceAccount and RBAC applied as rendered, Events
// written with that identity, what it may not do, and the admission policy
// that guards the tolerate annotation.
package kube

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/nri-image-verifier/nri-image-verifier/internal/daemontest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/kubetest"
)

const (
	pluginNS    = kubetest.PluginNamespace
	pluginSA    = kubetest.PluginServiceAccount
	tolerateKey = "tolerate-missing-nri-plugins.noderesource.dev"
)

var (
	testCluster *kubetest.Cluster
	admin       *kubernetes.Clientset
)

// TestMain starts one API server for the package, with the chart applied;
// the tests share it and keep apart by namespace. If the tools cannot be
// built or the server does not start, every test fails with the reason:
// none is skipped.
func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration/kube:", err)
		code = 1
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	c, err := kubetest.StartWithChart(ctx, os.Stderr)
	if err != nil {
		return 1, err
	}
	defer c.Stop()
	testCluster, admin = c, c.Client
	// The daemon binary, if a test built it.
	defer daemontest.Cleanup()
	return m.Run(), nil
}
