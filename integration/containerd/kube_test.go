package containerd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/nri-image-verifier/nri-image-verifier/internal/containerdtest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/kubetest"
	"github.com/nri-image-verifier/nri-image-verifier/report/events"
)

// kubeCluster is a kube-apiserver and etcd with the chart applied
// (internal/kubetest), started in the background while the containerd
// world is built and its first cases run, so that it costs the suite
// little wall time.
type kubeCluster struct {
	done    chan struct{}
	started time.Time
	took    time.Duration
	log     strings.Builder // kubetest's build and start-up output
	c       *kubetest.Cluster
	err     error
}

// startKube starts the cluster in the background; it is stopped when t
// ends. A failure to build or start it is reported by cluster, to the case
// that needs it: it fails that case, never skips it.
func startKube(t *testing.T) *kubeCluster {
	ctx, cancel := context.WithCancel(context.Background())
	k := &kubeCluster{done: make(chan struct{}), started: time.Now()}
	go func() {
		defer close(k.done)
		k.c, k.err = kubetest.StartWithChart(ctx, &k.log)
		k.took = time.Since(k.started)
	}()
	t.Cleanup(func() {
		cancel() // a tools build still running stops
		<-k.done
		if k.c != nil {
			k.c.Stop()
		}
	})
	return k
}

// cluster waits for the cluster, failing t with the reason if it did not
// start.
func (k *kubeCluster) cluster(t *testing.T) *kubetest.Cluster {
	t.Helper()
	start := time.Now()
	<-k.done
	out := strings.TrimSpace(k.log.String())
	if k.err != nil {
		t.Fatalf("this case needs a real kube-apiserver and etcd (internal/kubetoolstest; `make kube-tools` builds them): %v\n%s",
			k.err, out)
	}
	t.Logf("%s (started in the background %v before this case; it waited %v for it)", out,
		start.Sub(k.started).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	return k.c
}

// eventCases joins the real containerd to a real API server: the plugin,
// given a kubeconfig with the token of the chart's ServiceAccount (as its
// DaemonSet pod would have), turns a refused container into a Warning
// Event on the Pod that kubelet asked containerd to run it in, found by
// the namespace, name and uid that CRI carried.
func (w *world) eventCases(t *testing.T, k *kubeCluster) {
	t.Run("Events: a denied container is one Event series on its Pod; a signed one is none", func(t *testing.T) {
		c := k.cluster(t)
		ctx := context.Background()
		token, err := c.PluginToken(ctx)
		if err != nil {
			t.Fatal(err)
		}
		kc := filepath.Join(w.dir, "kube", "kubeconfig")
		if err := os.MkdirAll(filepath.Dir(kc), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := c.Kubeconfig(kc, token); err != nil {
			t.Fatal(err)
		}
		// The cases after this one run with the plugin as it was, whatever
		// happens here.
		t.Cleanup(func() { w.restartPlugin(t) })
		w.restartPlugin(t, "--kubeconfig", kc)

		// The Pod as the API server has it, bound to this node; kubelet
		// then runs its sandbox with the Pod's namespace, name and uid.
		ns, err := c.NewNamespace(ctx, "e2e-events")
		if err != nil {
			t.Fatal(err)
		}
		const podName, signedCtr, unsignedCtr = "events-web", "app-signed", "app-unsigned"
		apiPod, err := c.Client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: podName},
			Spec: corev1.PodSpec{NodeName: "e2e-node", Containers: []corev1.Container{
				{Name: signedCtr, Image: w.signed.Ref},
				{Name: unsignedCtr, Image: w.unsigned.Ref},
			}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		uid := string(apiPod.UID)
		pod := w.runPodOf(t, containerdtest.PodSpec{Namespace: ns, Name: podName, UID: uid})

		// The signed container: created and running, no Event.
		id, err := w.cri.CreateContainer(ctx, pod, signedCtr, w.signed.Ref)
		if err != nil {
			t.Fatalf("container of %s refused: %s", w.signed.Ref, containerdtest.CRIMessage(err))
		}
		w.checkStarted(t, id, w.signed, podName, signedCtr)

		// The unsigned container, tried again as kubelet does on each sync
		// after CreateContainerError: same pod, same container name.
		const attempts = 4
		var note string
		for i := range attempts {
			msg := w.expectRefusedByContainerd(t, pod, unsignedCtr, w.unsigned.Ref)
			// kubelet shows containerd's wrapping; the plugin's own line is
			// what follows the inner gRPC status.
			_, n, ok := strings.Cut(msg, "desc = ")
			if !ok || !strings.HasPrefix(n, "nri-image-verifier: image "+w.unsigned.Ref+" ("+w.unsigned.Digest+") denied by rule") ||
				!strings.Contains(n, noSignature) {
				t.Fatalf("attempt %d: not the plugin's final refusal of the unsigned image (a pending one, "+
					"\"verification still running\", would be a series of its own): %s", i+1, msg)
			}
			if i > 0 && n != note {
				t.Fatalf("attempt %d refused with another message:\n%s\nthan the first:\n%s", i+1, n, note)
			}
			note = n
		}

		// client-go writes the first occurrence as an Event and the second
		// as a patch giving it series.count 2; later ones only count up in
		// the daemon's memory (written every 30 minutes), so the API says
		// count 2 however many retries there were.
		evs := waitNamespaceEvents(t, c, ns, func(evs []eventsv1.Event) bool {
			return len(evs) >= 1 && evs[0].Series != nil
		})
		time.Sleep(500 * time.Millisecond) // anything else, an Event for the allow too, would be there by now
		evs = namespaceEvents(t, c, ns)
		if len(evs) != 1 {
			t.Fatalf("%d Events in the Pod's namespace after %d refusals of one container and one allowed container, "+
				"want 1 (a series):\n%s", len(evs), attempts, describeEvents(evs))
		}
		e := evs[0]
		t.Logf("Event %s: %s %s, series count %d, note %q", e.Name, e.Type, e.Reason, e.Series.Count, e.Note)
		for field, gw := range map[string][2]string{
			"regarding.kind":       {e.Regarding.Kind, "Pod"},
			"regarding.apiVersion": {e.Regarding.APIVersion, "v1"},
			"regarding.namespace":  {e.Regarding.Namespace, ns},
			"regarding.name":       {e.Regarding.Name, podName},
			"regarding.uid":        {string(e.Regarding.UID), uid},
			"regarding.fieldPath":  {e.Regarding.FieldPath, "spec.containers{" + unsignedCtr + "}"},
			"type":                 {e.Type, corev1.EventTypeWarning},
			"reason":               {e.Reason, events.ReasonFailed},
			"action":               {e.Action, events.ActionDeny},
			"note":                 {e.Note, note},
			"reportingController":  {e.ReportingController, events.Controller},
			"reportingInstance":    {e.ReportingInstance, "e2e-node"},
		} {
			if gw[0] != gw[1] {
				t.Errorf("%s = %q, want %q", field, gw[0], gw[1])
			}
		}
		if e.Series.Count < 2 || e.Series.Count > attempts {
			t.Errorf("series count %d after %d refusals, want 2..%d", e.Series.Count, attempts, attempts)
		}

		// What `kubectl describe pod` shows: the same one Event, found by
		// the Pod's reference in the core/v1 view (which keeps the series
		// as series, count 0).
		list, err := c.Client.CoreV1().Events(ns).Search(scheme.Scheme, apiPod)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(list.Items); n != 1 || list.Items[0].Name != e.Name || list.Items[0].Message != note ||
			list.Items[0].Series == nil || list.Items[0].Series.Count != e.Series.Count {
			for _, ce := range list.Items {
				t.Logf("core/v1 Event %s: %s %s count %d series %+v: %s", ce.Name, ce.Type, ce.Reason, ce.Count, ce.Series, ce.Message)
			}
			t.Errorf("describe pod finds %d Events, want the one series %s", n, e.Name)
		}

		// The audit log agrees: the uid the Event carries is the one CRI
		// sent, one allow and every refusal.
		if lines := w.auditLines(t, podName, signedCtr); len(lines) != 1 || lines[0]["verdict"] != "allow" ||
			lines[0]["namespace"] != ns || lines[0]["pod_uid"] != uid {
			t.Errorf("audit lines of the signed container: %v", lines)
		}
		lines := w.auditLines(t, podName, unsignedCtr)
		if len(lines) != attempts {
			t.Errorf("%d audit lines for the unsigned container, want %d: %v", len(lines), attempts, lines)
		}
		for _, l := range lines {
			if r, _ := l["reason"].(string); l["verdict"] != "deny" || l["namespace"] != ns || l["pod_uid"] != uid ||
				r == "" || !strings.Contains(note, r) {
				t.Errorf("audit line of the unsigned container: %v", l)
			}
		}

		log := w.plugin.Log() // the plugin restarted above: all of its log is this case's
		if !strings.Contains(log, `"msg":"recording Kubernetes Events"`) {
			t.Error("the plugin did not log that it records Events")
		}
		if strings.Contains(log, "cannot write Kubernetes Events") {
			t.Errorf("the plugin failed to write Events; its log:\n%s", w.plugin.Tail(20))
		}
	})
}

// namespaceEvents lists every Event of ns through events.k8s.io, the API
// the plugin writes.
func namespaceEvents(t *testing.T, c *kubetest.Cluster, ns string) []eventsv1.Event {
	t.Helper()
	list, err := c.Client.EventsV1().Events(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("list Events of %s: %v", ns, err)
	}
	return list.Items
}

// waitNamespaceEvents polls ns's Events until cond holds.
func waitNamespaceEvents(t *testing.T, c *kubetest.Cluster, ns string, cond func([]eventsv1.Event) bool) []eventsv1.Event {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		evs := namespaceEvents(t, c, ns)
		if cond(evs) {
			return evs
		}
		if time.Now().After(deadline) {
			t.Fatalf("no Event series in %s within %v; its Events:\n%s", ns, wait, describeEvents(evs))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func describeEvents(evs []eventsv1.Event) string {
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "  %s: %s %s regarding %s/%s/%s uid %s %s, series %+v: %s\n", e.Name, e.Type, e.Reason,
			e.Regarding.Kind, e.Regarding.Namespace, e.Regarding.Name, e.Regarding.UID, e.Regarding.FieldPath, e.Series, e.Note)
	}
	return b.String()
}
