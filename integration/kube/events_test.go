package kube

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"

	"github.com/nri-image-verifier/nri-image-verifier/gate"
	"github.com/nri-image-verifier/nri-image-verifier/report/events"
)

const waitFor = 30 * time.Second

// newNamespace creates a namespace with the "default" ServiceAccount that
// the (absent) controller manager would make, so that Pods can be created.
func newNamespace(t *testing.T, prefix string) string {
	t.Helper()
	ns, err := testCluster.NewNamespace(context.Background(), prefix)
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

func ensureDefaultSA(t *testing.T, ns string) {
	t.Helper()
	if err := testCluster.EnsureDefaultSA(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
}

// pluginConfig is a client config with the identity the chart gives the
// plugin: a token of its ServiceAccount, as a pod would have mounted.
func pluginConfig(t *testing.T) *rest.Config {
	t.Helper()
	token, err := testCluster.PluginToken(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return testCluster.WithToken(token)
}

// startRecorder runs the daemon's Event recorder as the plugin's
// ServiceAccount.
func startRecorder(t *testing.T, node string) *events.Recorder {
	t.Helper()
	sink, err := events.NewSink(pluginConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	ev, err := events.New(events.Config{Sink: sink, Node: node,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := ev.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ev.Close)
	return ev
}

func newUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// describeEvents finds a Pod's Events the way `kubectl describe pod` does:
// core/v1 Events searched by the Pod's reference (kind, namespace, name,
// uid). The Pod need not exist, as for a refused one it mostly does.
func describeEvents(t *testing.T, ns, pod, uid string) []corev1.Event {
	t.Helper()
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: pod, UID: types.UID(uid)}}
	list, err := admin.CoreV1().Events(ns).Search(scheme.Scheme, p)
	if err != nil {
		t.Fatalf("search events of %s/%s: %v", ns, pod, err)
	}
	return list.Items
}

// waitEvents polls until cond holds for the Pod's Events.
func waitEvents(t *testing.T, in gate.Input, what string, cond func([]corev1.Event) bool) []corev1.Event {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		evs := describeEvents(t, in.Namespace, in.Pod, in.PodUID)
		if cond(evs) {
			return evs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; the pod's events: %+v", what, waitFor, evs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func denial(in gate.Input) gate.Decision {
	return gate.Decision{Verdict: gate.VerdictDeny, Image: in.Image, Rule: "registry.example.com/*",
		Validator: "default", Mode: "enforce", Reason: "no cosign signature found for " + in.Digest}
}

func podInput(ns, pod, container string) gate.Input {
	return gate.Input{Image: "registry.example.com/team/app:v1",
		Digest:    "sha256:6f1c2a0e4b9d3c7a8e5f0d1b2c3a4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d",
		Namespace: ns, Pod: pod, PodUID: newUID(), Container: container}
}

// TestDenialIsAnEventOnThePod: what `kubectl describe pod` shows for a
// refused container, written with the chart's RBAC.
func TestDenialIsAnEventOnThePod(t *testing.T) {
	rec := startRecorder(t, "worker-1")
	in := podInput(newNamespace(t, "team-a"), "web-0", "app")
	d := denial(in)
	rec.Report(in, d)

	e := waitEvents(t, in, "the denial's event", func(evs []corev1.Event) bool { return len(evs) == 1 })[0]
	for field, gw := range map[string][2]string{
		"type":                     {e.Type, corev1.EventTypeWarning},
		"reason":                   {e.Reason, "ImageVerificationFailed"},
		"message":                  {e.Message, d.Message(in)},
		"action":                   {e.Action, events.ActionDeny},
		"reportingComponent":       {e.ReportingController, "nri-image-verifier"},
		"reportingInstance":        {e.ReportingInstance, "worker-1"},
		"involvedObject.kind":      {e.InvolvedObject.Kind, "Pod"},
		"involvedObject.namespace": {e.InvolvedObject.Namespace, in.Namespace},
		"involvedObject.name":      {e.InvolvedObject.Name, in.Pod},
		"involvedObject.uid":       {string(e.InvolvedObject.UID), in.PodUID},
		"involvedObject.fieldPath": {e.InvolvedObject.FieldPath, "spec.containers{app}"},
	} {
		if gw[0] != gw[1] {
			t.Errorf("%s = %q, want %q", field, gw[0], gw[1])
		}
	}
	// The message is the CRI error's, one line, naming image, digest, rule.
	for _, want := range []string{in.Digest, `rule "registry.example.com/*"`, "no cosign signature"} {
		if !strings.Contains(e.Message, want) {
			t.Errorf("message %q lacks %q", e.Message, want)
		}
	}

	// kubelet retries the creation on later syncs: the repeats become one
	// series on the same Event, not more Events.
	for range 4 {
		rec.Report(in, d)
	}
	evs := waitEvents(t, in, "a series", func(evs []corev1.Event) bool {
		return len(evs) >= 1 && evs[0].Series != nil
	})
	if len(evs) != 1 {
		t.Fatalf("%d events after 5 denials of one container, want 1 (a series)", len(evs))
	}
	if evs[0].Series.Count < 2 || evs[0].Name != e.Name {
		t.Errorf("series %+v on event %s, want count >= 2 on %s", evs[0].Series, evs[0].Name, e.Name)
	}
	// The same Event through the events.k8s.io API, which the plugin writes.
	ev, err := admin.EventsV1().Events(in.Namespace).Get(context.Background(), e.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ev.Regarding.UID != types.UID(in.PodUID) || ev.Note != d.Message(in) || ev.Series == nil {
		t.Errorf("events.k8s.io view: regarding %+v note %q series %+v", ev.Regarding, ev.Note, ev.Series)
	}
}

// TestEventsPerContainerAndAudit: another container of the pod has its own
// Event, an audit-mode would-be denial has its own reason, and other
// namespaces work too (the role is cluster-wide for Events only).
func TestEventsPerContainerAndAudit(t *testing.T) {
	rec := startRecorder(t, "worker-2")
	ns := newNamespace(t, "team-b")
	in := podInput(ns, "batch-0", "main")
	rec.Report(in, denial(in))
	side := in
	side.Container = "sidecar"
	audit := gate.Decision{Allowed: true, Verdict: gate.VerdictAuditDeny, Image: in.Image, Rule: "*",
		Validator: "default", Mode: "audit", Reason: "no cosign signature"}
	rec.Report(side, audit)
	// Allowed containers leave no Event.
	rec.Report(gate.Input{Namespace: ns, Pod: "batch-0", PodUID: in.PodUID, Container: "ok", Image: in.Image},
		gate.Decision{Allowed: true, Verdict: gate.VerdictAllow, Mode: "enforce"})

	evs := waitEvents(t, in, "two events", func(evs []corev1.Event) bool { return len(evs) >= 2 })
	time.Sleep(300 * time.Millisecond) // an Event for the allow would show up by now
	evs = describeEvents(t, ns, in.Pod, in.PodUID)
	if len(evs) != 2 {
		t.Fatalf("%d events, want 2: %+v", len(evs), evs)
	}
	byPath := map[string]corev1.Event{}
	for _, e := range evs {
		byPath[e.InvolvedObject.FieldPath] = e
	}
	if e := byPath["spec.containers{main}"]; e.Reason != events.ReasonFailed || e.Message != denial(in).Message(in) {
		t.Errorf("main container's event: %s %q", e.Reason, e.Message)
	}
	a := byPath["spec.containers{sidecar}"]
	if a.Reason != "ImageVerificationAudit" || a.Type != corev1.EventTypeWarning || a.Message != audit.Message(side) {
		t.Errorf("audit event: %s %s %q", a.Type, a.Reason, a.Message)
	}
}

// TestLongMessageIsAccepted: the API refuses a note over 1 kB outright; the
// recorder cuts it so that the Event still lands.
func TestLongMessageIsAccepted(t *testing.T) {
	rec := startRecorder(t, strings.Repeat("node", 40)) // over the 128-byte instance limit too
	in := podInput(newNamespace(t, "team-c"), "big-0", "app")
	d := denial(in)
	d.Reason = strings.Repeat("signature of the wrong key; ", 60)
	rec.Report(in, d)
	e := waitEvents(t, in, "the cut event", func(evs []corev1.Event) bool { return len(evs) == 1 })[0]
	if len(e.Message) > 1024 || !strings.HasPrefix(d.Message(in), strings.TrimSuffix(e.Message, "...")) {
		t.Errorf("message of %d bytes is not a cut of the deny message", len(e.Message))
	}
}
