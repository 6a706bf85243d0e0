package kube

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/nri-image-verifier/nri-image-verifier/internal/kubetools"
)

var (
	testCluster *cluster
	admin       *kubernetes.Clientset
)

// TestMain starts one API server for the package; the tests share it and
// keep apart by namespace. If the tools cannot be built or the server does
// not start, every test fails with the reason: none is skipped.
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
	root, err := kubetools.RepoRoot()
	if err != nil {
		return 1, err
	}
	tools, err := kubetools.Ensure(ctx, root, os.Stderr)
	if err != nil {
		return 1, fmt.Errorf("kube-apiserver and etcd are needed and could not be built: %w", err)
	}
	start := time.Now()
	c, err := startCluster(ctx, tools)
	if c != nil {
		defer c.stop()
	}
	if err != nil {
		return 1, fmt.Errorf("starting kube-apiserver %s: %w", tools.Version, err)
	}
	fmt.Fprintf(os.Stderr, "integration/kube: kube-apiserver %s ready on %s in %s\n", tools.Version, c.host,
		time.Since(start).Round(10*time.Millisecond))
	testCluster = c
	if admin, err = kubernetes.NewForConfig(c.admin()); err != nil {
		return 1, err
	}
	if err := applyChart(ctx, root); err != nil {
		return 1, fmt.Errorf("applying the chart's manifests: %w", err)
	}
	// The daemon binary, if a test built it.
	defer func() {
		if binPath != "" {
			os.RemoveAll(filepath.Dir(binPath))
		}
	}()
	return m.Run(), nil
}
