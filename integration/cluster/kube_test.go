package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

const (
	// release is the Helm release; the chart then names its objects
	// after it alone: DaemonSet nri-image-verifier, ConfigMap
	// nri-image-verifier-policy.
	release         = "nri-image-verifier"
	pluginNamespace = "kube-system"
	policyConfigMap = release + "-policy"
	appNamespace    = "default"
)

// policy is the chart's `policy` value: every image of the registry must
// carry a cosign signature by the run's key, enforced; allowed names
// repositories let through without a signature (a static validator).
func (c *cluster) policy(allowed ...string) map[string]any {
	rules := []any{map[string]any{"pattern": c.registry + "/*", "with": map[string]any{"trustRoot": "cluster-key"}}}
	for _, repo := range allowed {
		rules = append(rules, map[string]any{"pattern": repo + ":*", "validator": "allow"})
	}
	return map[string]any{
		"mode": "enforce",
		"validators": []any{
			map[string]any{"name": "default", "type": "cosign", "trustRoots": []any{
				map[string]any{"name": "cluster-key", "key": c.key.PublicKeyPEM()},
			}},
			map[string]any{"name": "allow", "type": "static", "approve": true},
		},
		"policy": rules,
	}
}

// install installs (or upgrades, or reinstalls) the chart from
// daemonset/chart with helm, as a user would: the plugin's image by
// digest from the loopback registry, this containerd's NRI socket folder,
// the node's network (no CNI here), and the API server's address in the
// environment, as the `kubernetes` Service's ClusterIP leads nowhere
// without kube-proxy.
func (c *cluster) install(t *testing.T, policy map[string]any) {
	t.Helper()
	c.installWith(t, policy, nil)
}

// installWith is install with more chart values (they win).
func (c *cluster) installWith(t *testing.T, policy, more map[string]any) {
	t.Helper()
	values := map[string]any{
		"image": map[string]any{
			"repository": c.plugin.Repo(),
			"digest":     c.plugin.Digest,
			"pullPolicy": "IfNotPresent",
		},
		"nri":         map[string]any{"socketDir": c.nriDir()},
		"hostNetwork": true,
		"http":        map[string]any{"port": c.httpPort},
		"logLevel":    "debug",
		"policy":      policy,
		"extraEnv": []any{
			map[string]any{"name": "KUBERNETES_SERVICE_HOST", "value": "127.0.0.1"},
			map[string]any{"name": "KUBERNETES_SERVICE_PORT", "value": c.apiPort()},
		},
	}
	maps.Copy(values, more)
	b, err := json.MarshalIndent(values, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	// JSON is YAML: helm reads it as a values file.
	path := filepath.Join(c.dir, "values.json")
	writeFile(t, path, string(b))
	c.helm(t, "upgrade", "--install", release, filepath.Join(c.root, "daemonset", "chart"),
		"--namespace", pluginNamespace, "--values", path)
}

// helm runs the cached helm against the cluster.
func (c *cluster) helm(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.Command(c.tools.Helm, append(args, "--kubeconfig", c.kubeconfig)...)
	cmd.Env = c.toolEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// toolEnv is helm's and kubectl's environment: their caches and config
// (~/.kube/cache, ~/.cache/helm, ...) under the run's directory, not the
// user's home.
func (c *cluster) toolEnv() []string {
	home := filepath.Join(c.dir, "home")
	return append(os.Environ(), "HOME="+home, "XDG_CACHE_HOME="+home+"/.cache",
		"XDG_CONFIG_HOME="+home+"/.config", "XDG_DATA_HOME="+home+"/.local/share")
}

// kubectl runs the cached kubectl against the cluster.
func (c *cluster) kubectl(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(c.tools.Kubectl, append([]string{"--kubeconfig", c.kubeconfig}, args...)...)
	cmd.Env = c.toolEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// waitPlugin waits for the DaemonSet's one pod to be Ready (its
// readinessProbe: registered with containerd, policy loaded) and its log
// to say it connected to NRI, and returns the pod.
func (c *cluster) waitPlugin(t *testing.T) *corev1.Pod {
	t.Helper()
	ctx := context.Background()
	var pod *corev1.Pod
	c.eventually(t, "the plugin's pod Ready and connected to NRI", func() (bool, string) {
		pods, err := c.client.CoreV1().Pods(pluginNamespace).List(ctx, metav1.ListOptions{
			LabelSelector: "app.kubernetes.io/instance=" + release})
		if err != nil {
			return false, err.Error()
		}
		if len(pods.Items) != 1 || pods.Items[0].DeletionTimestamp != nil {
			return false, fmt.Sprintf("%d pods", len(pods.Items))
		}
		pod = &pods.Items[0]
		if !podReady(pod) {
			return false, podState(pod)
		}
		return strings.Contains(c.podLog(pod), `"connected to NRI runtime"`), "no \"connected to NRI runtime\" in its log"
	})
	return pod
}

func podReady(p *corev1.Pod) bool {
	for _, cond := range p.Status.Conditions {
		if cond.Type == corev1.PodReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podState is a pod's phase and its containers' states, for messages.
func podState(p *corev1.Pod) string {
	s := string(p.Status.Phase)
	for _, cs := range p.Status.ContainerStatuses {
		switch {
		case cs.State.Waiting != nil:
			s += fmt.Sprintf("; %s waiting: %s: %s", cs.Name, cs.State.Waiting.Reason, cs.State.Waiting.Message)
		case cs.State.Running != nil:
			s += fmt.Sprintf("; %s running (restarts %d)", cs.Name, cs.RestartCount)
		case cs.State.Terminated != nil:
			s += fmt.Sprintf("; %s terminated: %s", cs.Name, cs.State.Terminated.Reason)
		}
	}
	return s
}

// deploy creates a Deployment of one hostNetwork pod running image, and
// returns its name, also its pods' app label.
func (c *cluster) deploy(t *testing.T, name, image string) string {
	t.Helper()
	return c.deployWith(t, name, image, "")
}

// deployWith is deploy with, when volume is set, an image volume of that
// image mounted at /tools (Kubernetes volumes[].image).
func (c *cluster) deployWith(t *testing.T, name, image, volume string) string {
	t.Helper()
	ctr := corev1.Container{Name: "app", Image: image}
	var vols []corev1.Volume
	if volume != "" {
		vols = []corev1.Volume{{Name: "tools", VolumeSource: corev1.VolumeSource{
			Image: &corev1.ImageVolumeSource{Reference: volume, PullPolicy: corev1.PullIfNotPresent}}}}
		ctr.VolumeMounts = []corev1.VolumeMount{{Name: "tools", MountPath: "/tools"}}
	}
	labels := map[string]string{"app": name}
	_, err := c.client.AppsV1().Deployments(appNamespace).Create(context.Background(), &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					HostNetwork:                   true,
					TerminationGracePeriodSeconds: ptr.To[int64](1),
					Containers:                    []corev1.Container{ctr},
					Volumes:                       vols,
				},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return name
}

// appPod waits for the Deployment's pod to exist and returns it once
// cond holds for it.
func (c *cluster) appPod(t *testing.T, app, what string, cond func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	c.eventually(t, "the pod of "+app+" "+what, func() (bool, string) {
		pods, err := c.client.CoreV1().Pods(appNamespace).List(context.Background(), metav1.ListOptions{LabelSelector: "app=" + app})
		if err != nil {
			return false, err.Error()
		}
		if len(pods.Items) != 1 {
			return false, fmt.Sprintf("%d pods", len(pods.Items))
		}
		pod = &pods.Items[0]
		return cond(pod), podState(pod)
	})
	return pod
}

// running: every container runs and none has restarted.
func running(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning || len(p.Status.ContainerStatuses) == 0 {
		return false
	}
	for _, cs := range p.Status.ContainerStatuses {
		if cs.State.Running == nil || cs.RestartCount != 0 {
			return false
		}
	}
	return true
}

// createContainerError: the pod's one container waits, refused at creation.
func createContainerError(p *corev1.Pod) bool {
	cs := p.Status.ContainerStatuses
	return len(cs) == 1 && cs[0].State.Waiting != nil && cs[0].State.Waiting.Reason == "CreateContainerError"
}

// waitRunning waits for a pod, by name, to run.
func (c *cluster) waitRunning(t *testing.T, ns, name string) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	c.eventually(t, "pod "+ns+"/"+name+" running", func() (bool, string) {
		var err error
		pod, err = c.client.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return running(pod), podState(pod)
	})
	return pod
}

// waitingMessage is the message of the pod's one waiting container.
func waitingMessage(p *corev1.Pod) string {
	return p.Status.ContainerStatuses[0].State.Waiting.Message
}

// events lists the core/v1 view of the Events on a pod, as `kubectl
// describe` reads them.
func (c *cluster) events(t *testing.T, p *corev1.Pod) []corev1.Event {
	t.Helper()
	list, err := c.client.CoreV1().Events(p.Namespace).List(context.Background(), metav1.ListOptions{
		FieldSelector: "involvedObject.uid=" + string(p.UID)})
	if err != nil {
		t.Fatal(err)
	}
	return list.Items
}

// saveDescribe writes `kubectl describe pod` of p to keepDir, for the
// README to quote, and returns the text.
func (c *cluster) saveDescribe(t *testing.T, p *corev1.Pod, file string) string {
	t.Helper()
	out := c.kubectl(t, "describe", "pod", "--namespace", p.Namespace, p.Name)
	keep, err := keepDir()
	if err == nil {
		err = os.MkdirAll(keep, 0o755)
	}
	if err == nil {
		path := filepath.Join(keep, file)
		if err = os.WriteFile(path, []byte(out), 0o644); err == nil {
			t.Logf("`kubectl describe pod` of the refused pod saved in %s", path)
		}
	}
	if err != nil {
		t.Logf("saving `kubectl describe pod`: %v", err)
	}
	return out
}

// removePods stops and removes every pod sandbox through CRI, so that
// containerd unmounts and ends what it started.
func (c *cluster) removePods(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := c.cri.RemovePods(ctx); err != nil {
		t.Logf("teardown: %v", err)
	}
}

// podLog is what the containers of pod wrote, every restart's, from the
// files kubelet keeps in podLogsDir (<namespace>_<name>_<uid>/<container>/).
func (c *cluster) podLog(pod *corev1.Pod) string {
	return readLogs(filepath.Join(c.dir, "pod-logs", pod.Namespace+"_"+pod.Name+"_"+string(pod.UID), "*", "*.log"))
}

// apiPort is the API server's port, for the plugin's environment.
func (c *cluster) apiPort() string {
	u, err := url.Parse(c.api.Host)
	if err != nil {
		return ""
	}
	return u.Port()
}
