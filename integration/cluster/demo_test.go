package cluster

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
)

// TestDemo is `make cluster-demo`: the story's cluster with the chart
// installed, a signed and a refused Deployment, for a person to look at
// with the built kubectl until Ctrl-C; then all of it is torn down as
// after a test. Only with -demo.
func TestDemo(t *testing.T) {
	if !*demo {
		t.Skip("only with -demo (make cluster-demo)")
	}
	// Notified from the start, so that a Ctrl-C while the cluster comes
	// up also ends in the t.Cleanup teardown, once it is up.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	c := newCluster(t)
	c.install(t, c.policy())
	c.waitPlugin(t)
	c.deploy(t, "signed", c.signed.Ref)
	c.deploy(t, "unsigned", c.unsigned.Ref)
	c.appPod(t, "signed", "running", running)
	c.appPod(t, "unsigned", "refused at creation (CreateContainerError)", createContainerError)

	fmt.Printf(`
The cluster is up: one node, nri-image-verifier installed from daemonset/chart.

  export KUBECONFIG=%s
  alias kubectl='%s --cache-dir %s'
  alias helm=%s

  kubectl get pods -A                       # signed runs, unsigned waits in CreateContainerError
  kubectl describe pod -l app=unsigned      # our ImageVerificationFailed Event beside kubelet's
  kubectl -n %s edit configmap %s   # the policy; the plugin reloads it
  kubectl -n %s delete daemonset %s   # no plugin: new containers are refused

  kubectl logs -l app=signed               # what the signed container printed

Registry: %s (signed: %s, unsigned: %s). The signing key's public half is in
the policy ConfigMap. The values helm installed: %s

Ctrl-C removes everything.
`, c.kubeconfig, c.tools.Kubectl, filepath.Join(c.dir, "home", ".kube", "cache"), c.tools.Helm,
		pluginNamespace, policyConfigMap, pluginNamespace, release,
		c.registry, c.signed.Ref, c.unsigned.Ref, filepath.Join(c.dir, "values.json"))
	s := <-sig
	fmt.Printf("\n%v: tearing the cluster down\n", s)
}
