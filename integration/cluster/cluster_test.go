// Package cluster proves the user story on a real single-node Kubernetes
// cluster built on this machine from upstream sources (no kind, no
// Docker, no download but the Go module proxy): the chart installed with
// helm from daemonset/, an unsigned pod refused at the node, and the
// reason where an operator looks, `kubectl describe pod`. `make
// cluster-demo` brings the same cluster up for a person (TestDemo).
//
// It needs root, as the real-containerd suite does; NIV_SKIP_CONTAINERD=1
// skips it.
package cluster

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/nri-image-verifier/nri-image-verifier/report/events"
)

var demo = flag.Bool("demo", false, "run TestDemo: the cluster up for a person until Ctrl-C (make cluster-demo)")

// The default validator's refusal while the plugin is missing.
const notPresent = `required plugin "nri-image-verifier" not present`

// TestCluster is the story, in order, on one cluster:
//  1. the plugin's image, built and pushed here without Docker, signed;
//  2. the chart installed with helm: the DaemonSet's pod starts (the
//     tolerate annotation: the plugin cannot check itself) and registers
//     with NRI, and its own image passes its own policy;
//  3. a signed Deployment runs; an unsigned one waits in
//     CreateContainerError with our one-line reason, and our Event sits
//     beside kubelet's in `kubectl describe pod`;
//  4. a ConfigMap edit that allows the image: the plugin reloads and
//     kubelet's next retry starts the container, nothing restarted;
//  5. the DaemonSet deleted: new containers are refused (the default
//     validator's required_plugins); reinstalled: they start.
func TestCluster(t *testing.T) {
	if *demo {
		t.Skip("-demo: TestDemo runs instead")
	}
	c := newCluster(t)
	ctx := context.Background()
	stepStart := time.Now()
	step := func(done string) {
		t.Logf("%s in %v", done, time.Since(stepStart).Round(time.Millisecond))
		stepStart = time.Now()
	}

	// 2. Install as a user would.
	c.install(t, c.policy())
	plugin := c.waitPlugin(t)
	if got := plugin.Status.ContainerStatuses[0].ImageID; !strings.HasSuffix(got, "@"+c.plugin.Digest) {
		t.Errorf("the plugin runs image %s, want the signed %s", got, c.plugin.Digest)
	}
	// While the plugin runs, a container of its image is checked like any
	// other: it passes, being signed.
	c.runToCompletion(t, "plugin-image", c.plugin.ByDigest(), "help")
	step("2. chart installed, plugin registered, its own image passes")

	// 3. Signed runs, unsigned is refused at the node.
	c.deploy(t, "signed", c.signed.Ref)
	signed := c.appPod(t, "signed", "running", running)
	// The image's own program runs, and says so through kubelet's API.
	if out := c.kubectl(t, "logs", "--namespace", appNamespace, signed.Name); strings.TrimSpace(out) != c.signed.Says {
		t.Errorf("kubectl logs of the signed pod: %q, want %q", out, c.signed.Says)
	}
	c.deploy(t, "unsigned", c.unsigned.Ref)
	refused := c.appPod(t, "unsigned", "refused at creation (CreateContainerError)", createContainerError)
	msg := waitingMessage(refused)
	for _, want := range []string{
		"nri-image-verifier: image ",
		"(" + c.unsigned.Digest + ")",
		`denied by rule "` + c.registry + `/*"`,
		"no cosign signature found for ",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("the container's waiting message does not say %q: %s", want, msg)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("the reason is more than one line: %q", msg)
	}
	var ours, kubelets []corev1.Event
	c.eventually(t, "an "+events.ReasonFailed+" Event from "+events.Controller+" and a Failed one from kubelet on "+refused.Name,
		func() (bool, string) {
			ours, kubelets = nil, nil
			evs := c.events(t, refused)
			for _, e := range evs {
				switch {
				case e.Reason == events.ReasonFailed && e.ReportingController == events.Controller:
					ours = append(ours, e)
				case e.Reason == "Failed" && e.Source.Component == "kubelet":
					kubelets = append(kubelets, e)
				}
			}
			return len(ours) > 0 && len(kubelets) > 0, fmt.Sprintf("%d events: %s", len(evs), eventList(evs))
		})
	if e := ours[0]; e.Type != corev1.EventTypeWarning || e.ReportingInstance != nodeName || !strings.Contains(e.Message, c.unsigned.Digest) {
		t.Errorf("our Event: type %s, reported by %s on %q, note %q; want a Warning from node %s naming %s",
			e.Type, e.ReportingController, e.ReportingInstance, e.Message, nodeName, c.unsigned.Digest)
	}
	describe := c.saveDescribe(t, refused, "refused-pod-describe.txt")
	for _, want := range []string{"CreateContainerError", events.ReasonFailed, events.Controller, "kubelet", "no cosign signature found for "} {
		if !strings.Contains(describe, want) {
			t.Errorf("`kubectl describe pod` does not show %q:\n%s", want, describe)
		}
	}
	step("3. signed runs; unsigned refused, with the reason and Events")

	// 4. Allow the image in the policy ConfigMap: the next retry starts it.
	cm, err := c.client.CoreV1().ConfigMaps(pluginNamespace).Get(ctx, policyConfigMap, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := json.Marshal(c.policy(c.unsigned.Repo()))
	if err != nil {
		t.Fatal(err)
	}
	cm.Data["policy.yaml"] = string(p) // JSON is YAML
	if _, err := c.client.CoreV1().ConfigMaps(pluginNamespace).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.appPod(t, "unsigned", "started by kubelet's retry once the policy allows it", func(p *corev1.Pod) bool {
		return p.UID == refused.UID && running(p)
	})
	if !strings.Contains(c.podLog(plugin), `"policy reloaded"`) {
		t.Errorf("the plugin's log does not say it reloaded the policy")
	}
	after := c.waitPlugin(t)
	if after.UID != plugin.UID || after.Status.ContainerStatuses[0].ContainerID != plugin.Status.ContainerStatuses[0].ContainerID ||
		after.Status.ContainerStatuses[0].RestartCount != 0 {
		t.Errorf("the plugin was restarted: pod %s container %s, then pod %s container %s (restarts %d)",
			plugin.UID, plugin.Status.ContainerStatuses[0].ContainerID,
			after.UID, after.Status.ContainerStatuses[0].ContainerID, after.Status.ContainerStatuses[0].RestartCount)
	}

	step("4. policy edited, the refused container started by the next retry")

	// 5. No plugin, no new containers; reinstalled, they start.
	c.kubectl(t, "delete", "daemonset", "--namespace", pluginNamespace, release)
	c.eventually(t, "the plugin's pod gone", func() (bool, string) {
		pods, err := c.client.CoreV1().Pods(pluginNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=" + release})
		if err != nil {
			return false, err.Error()
		}
		return len(pods.Items) == 0, fmt.Sprintf("%d pods", len(pods.Items))
	})
	c.deploy(t, "while-gone", c.signed.Ref)
	gone := c.appPod(t, "while-gone", "refused: the plugin containerd requires is missing", func(p *corev1.Pod) bool {
		return createContainerError(p) && strings.Contains(waitingMessage(p), notPresent)
	})
	c.install(t, c.policy(c.unsigned.Repo()))
	c.waitPlugin(t)
	c.appPod(t, "while-gone", "started once the plugin is back", func(p *corev1.Pod) bool {
		return p.UID == gone.UID && running(p)
	})
	step("5. DaemonSet deleted: containers refused; reinstalled: started")

	// 6. Image volumes (volumes[].image; kubelet serves them by default
	// since Kubernetes 1.35): with containerd's socket mounted, a signed
	// image with an unsigned image volume is refused, naming the volume,
	// and with a signed one it runs.
	c.installWith(t, c.policy(), map[string]any{
		"containerdFallback": map[string]any{"enabled": true, "socket": c.socket()},
		"criStateDir":        filepath.Join(c.dir, "state", "io.containerd.grpc.v1.cri"),
	})
	c.waitPlugin(t)
	c.deployWith(t, "volume-unsigned", c.signed.Ref, c.unsigned.Ref)
	volRefused := c.appPod(t, "volume-unsigned", "refused at creation (CreateContainerError)", createContainerError)
	for _, want := range []string{"image volume /tools: image ", "(" + c.unsigned.Digest + ")", "no cosign signature found for "} {
		if m := waitingMessage(volRefused); !strings.Contains(m, want) {
			t.Errorf("the container's waiting message does not say %q: %s", want, m)
		}
	}
	c.deployWith(t, "volume-signed", c.signed.Ref, c.signed.Ref)
	c.appPod(t, "volume-signed", "running", running)
	step("6. image volumes: unsigned refused, naming the volume; signed runs")
}

// runToCompletion runs a pod of image with args, never restarted, and
// waits for it to succeed.
func (c *cluster) runToCompletion(t *testing.T, name, image string, args ...string) {
	t.Helper()
	_, err := c.client.CoreV1().Pods(appNamespace).Create(context.Background(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			HostNetwork:                   true,
			RestartPolicy:                 corev1.RestartPolicyNever,
			AutomountServiceAccountToken:  ptr.To(false),
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers:                    []corev1.Container{{Name: "main", Image: image, Args: args}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c.eventually(t, "pod "+name+" ("+image+") to succeed", func() (bool, string) {
		p, err := c.client.CoreV1().Pods(appNamespace).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		if p.Status.Phase == corev1.PodFailed {
			t.Fatalf("pod %s failed: %s", name, podState(p))
		}
		return p.Status.Phase == corev1.PodSucceeded, podState(p)
	})
}

// eventList is Events as "reason (from): message" lines.
func eventList(evs []corev1.Event) string {
	var b strings.Builder
	for _, e := range evs {
		from := e.Source.Component
		if from == "" {
			from = e.ReportingController
		}
		fmt.Fprintf(&b, "\n  %s (%s): %s", e.Reason, from, e.Message)
	}
	return b.String()
}
