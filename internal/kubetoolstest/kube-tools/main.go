// Command kube-tools builds the Kubernetes test tools (kube-apiserver,
// kubelet, kube-controller-manager, kube-scheduler, kubectl, etcd, helm)
// into the cache if they are not there yet, and prints the folder that
// holds them. `make kube-tools` runs it before the tests, so that a
// cold build shows as a step of its own.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/nri-image-verifier/nri-image-verifier/internal/kubetoolstest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	root, err := kubetoolstest.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "kube-tools:", err)
		os.Exit(1)
	}
	t, err := kubetoolstest.Ensure(ctx, root, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kube-tools:", err)
		os.Exit(1)
	}
	fmt.Println(t.Dir)
}
