package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nri-image-verifier/nri-image-verifier/internal/kubetest"
)

// startControlPlane starts etcd and kube-apiserver (internal/kubetest),
// with the Node authorizer and a token for each component, then
// kube-controller-manager and kube-scheduler. The controller-manager signs
// service account tokens with the API server's key and publishes its CA
// (kube-root-ca.crt): without them no pod gets its service account volume.
func (c *cluster) startControlPlane(t *testing.T) {
	t.Helper()
	kubeletUser := kubetest.User{Token: token(t), Name: "system:node:" + nodeName, Groups: []string{"system:nodes"}}
	cmUser := kubetest.User{Token: token(t), Name: "system:kube-controller-manager"}
	schedUser := kubetest.User{Token: token(t), Name: "system:kube-scheduler"}
	var err error
	if c.pki, err = writeKubeletClientPKI(filepath.Join(c.dir, "pki")); err != nil {
		t.Fatal(err)
	}
	c.api, err = kubetest.StartWith(context.Background(), c.tools, kubetest.Options{
		Users:          []kubetest.User{kubeletUser, cmUser, schedUser},
		NodeAuthorizer: true,
		Dir:            c.dir,
		APIServerArgs: []string{
			"--kubelet-client-certificate", c.pki.Cert, "--kubelet-client-key", c.pki.Key,
			// The node's name resolves nowhere; its address does.
			"--kubelet-preferred-address-types", "InternalIP",
		},
	})
	if err != nil {
		t.Fatalf("starting kube-apiserver %s: %v", c.tools.Version, err)
	}
	c.client = c.api.Client
	if err := os.MkdirAll(c.kubeDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	c.kubeconfig = c.writeKubeconfig(t, "admin", kubetest.AdminToken)
	cm := c.writeKubeconfig(t, "kube-controller-manager", cmUser.Token)
	sched := c.writeKubeconfig(t, "kube-scheduler", schedUser.Token)
	c.writeKubeconfig(t, "kubelet", kubeletUser.Token)

	c.controllers = c.start(t, "kube-controller-manager", c.tools.ControllerManager,
		"--kubeconfig", cm,
		"--authentication-kubeconfig", cm,
		"--authorization-kubeconfig", cm,
		"--secure-port", "0",
		"--leader-elect=false",
		// Each controller with its own service account, as kubeadm runs
		// it: the bootstrap roles give the component itself little.
		"--use-service-account-credentials",
		"--service-account-private-key-file", c.api.ServiceAccountKey(),
		"--root-ca-file", c.api.CAFile(),
		// It would publish the API server's serving certificate as a
		// ClusterTrustBundle, which the API refuses (a self-signed leaf,
		// not a CA) and the log fills with.
		"--controllers", "*,-kube-apiserver-serving-clustertrustbundle-publisher-controller",
	)
	c.scheduler = c.start(t, "kube-scheduler", c.tools.Scheduler,
		"--kubeconfig", sched,
		"--authentication-kubeconfig", sched,
		"--authorization-kubeconfig", sched,
		"--secure-port", "0",
		"--leader-elect=false",
	)
}

func (c *cluster) kubeDir() string { return filepath.Join(c.dir, "kube") }

// writeKubeconfig writes the kubeconfig of token as name.kubeconfig.
func (c *cluster) writeKubeconfig(t *testing.T, name, token string) string {
	t.Helper()
	path := filepath.Join(c.kubeDir(), name+".kubeconfig")
	if err := c.api.Kubeconfig(path, token); err != nil {
		t.Fatal(err)
	}
	return path
}

func token(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// startKubelet starts kubelet on this containerd, as the only node, and
// waits until the node is Ready and the controller-manager has given the
// default namespace its ServiceAccount and root CA. Everything it writes
// is under the run's directory, except what host_test.go undoes.
//
// A static pod carrying the chart's tolerate annotation is there from the
// start: it must run although the plugin the default validator requires
// is not installed yet, as a control plane's static pods must.
func (c *cluster) startKubelet(t *testing.T) {
	t.Helper()
	ports, err := kubetest.FreePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	c.httpPort = ports[2]
	static := filepath.Join(c.dir, "static-pods")
	if err := os.MkdirAll(static, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(static, "static-web.yaml"), fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: static-web
  namespace: kube-system
  annotations:
    %s: "true"
spec:
  hostNetwork: true
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: %s
`, tolerateKey, c.signed.Ref))
	config := filepath.Join(c.dir, "kubelet.yaml")
	writeFile(t, config, c.kubeletConfig(ports[0], ports[1], static))
	if err := noteHostState(c.dir); err != nil {
		t.Fatal(err)
	}
	if err := makeCgroupRoot(filepath.Base(c.dir)); err != nil {
		t.Fatal(err)
	}
	c.kubelet = c.start(t, "kubelet", c.tools.Kubelet,
		"--config", config,
		"--kubeconfig", filepath.Join(c.kubeDir(), "kubelet.kubeconfig"),
		"--root-dir", filepath.Join(c.dir, "kubelet"),
		"--cert-dir", filepath.Join(c.dir, "kubelet-pki"),
		"--hostname-override", nodeName,
		"--node-ip", c.nodeIP,
		"--v", "2",
	)

	ctx := context.Background()
	c.eventually(t, "node "+nodeName+" Ready", func() (bool, string) {
		if c.kubelet.Exited() {
			t.Fatalf("kubelet exited:\n%s", c.kubelet.Tail(40))
		}
		node, err := c.client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		for _, cond := range node.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				return cond.Status == corev1.ConditionTrue, cond.Reason + ": " + cond.Message
			}
		}
		return false, "no Ready condition"
	})
	c.eventually(t, "the default ServiceAccount and kube-root-ca.crt in namespace default", func() (bool, string) {
		if _, err := c.client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{}); err != nil {
			return false, err.Error()
		}
		if _, err := c.client.CoreV1().ConfigMaps("default").Get(ctx, "kube-root-ca.crt", metav1.GetOptions{}); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	c.waitRunning(t, "kube-system", "static-web-"+nodeName)
}

// kubeletConfig: cgroupfs (no systemd here), swap tolerated, ports of its
// own, its API on the node's address (where kube-apiserver looks for it)
// open to kube-apiserver's client certificate alone, health on loopback, every folder it can be told
// of under the run's directory, pods under the run's cgroup, eviction and
// image garbage collection out of the way of a busy shared disk, and
// short sync periods so that a ConfigMap change reaches the plugin's
// volume, and a refused container is retried, within seconds.
func (c *cluster) kubeletConfig(port, healthzPort int, staticPods string) string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://%s
cgroupDriver: cgroupfs
cgroupRoot: /%s
failCgroupV1: false
failSwapOn: false
address: %s
port: %d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %d
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: %s}
authorization:
  mode: AlwaysAllow
podLogsDir: %s
volumePluginDir: %s
staticPodPath: %s
resolvConf: ""
fileCheckFrequency: 2s
syncFrequency: 5s
nodeStatusUpdateFrequency: 5s
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 1Mi
  nodefs.available: 1%%
  nodefs.inodesFree: 1%%
  imagefs.available: 1%%
`, c.socket(), filepath.Base(c.dir), c.nodeIP, port, healthzPort, c.pki.CA,
		filepath.Join(c.dir, "pod-logs"), filepath.Join(c.dir, "volume-plugins"), staticPods)
}

// eventually polls cond every 250 ms until it holds, or fails t after
// wait with the last state cond reported.
func (c *cluster) eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s; last: %s", wait, what, state)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
