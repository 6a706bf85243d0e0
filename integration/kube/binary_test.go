package kube

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"
	corev1 "k8s.io/api/core/v1"

	"github.com/nri-image-verifier/nri-image-verifier/gate"
	"github.com/nri-image-verifier/nri-image-verifier/internal/daemontest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/kubetest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/nritest"
)

// denyAll refuses every image: these tests are about what a refusal
// becomes, not about signatures (the integration package covers those).
const denyAll = `validators:
- name: default
  type: static
  approve: false
policy:
- pattern: "*"
`

// startNRI starts NRI's runtime side as containerd embeds it, with the
// default validator requiring the plugin.
func startNRI(t *testing.T) *nritest.Runtime {
	t.Helper()
	rt, err := nritest.New(nritest.Options{Required: []string{"nri-image-verifier"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rt.Close)
	if err := rt.Start(); err != nil {
		t.Fatal(err)
	}
	return rt
}

// create asks the runtime to create container id of the pod in in, as
// kubelet would through containerd, and returns the runtime's error.
func create(rt *nritest.Runtime, in gate.Input, id string) error {
	pod := &api.PodSandbox{Id: "sandbox-" + in.PodUID, Name: in.Pod, Namespace: in.Namespace, Uid: in.PodUID}
	ctr := &api.Container{Id: id, PodSandboxId: pod.Id, Name: in.Container,
		Image: &api.Image{Name: in.Image, Digest: in.Digest}}
	_, err := rt.CreateContainer(context.Background(), pod, ctr)
	return err
}

// daemon is `nri-image-verifier run` as a process.
type daemon struct {
	*daemontest.Daemon
	http string
}

func (d *daemon) log() string { return d.Log() }

// startDaemon runs the daemon against rt with extra flags, and waits until
// it has registered.
func startDaemon(t *testing.T, rt *nritest.Runtime, extra ...string) *daemon {
	t.Helper()
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(pol, []byte(denyAll), 0o600); err != nil {
		t.Fatal(err)
	}
	ports, err := kubetest.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{http: fmt.Sprintf("127.0.0.1:%d", ports[0])}
	args := append([]string{"run", "--policy", pol, "--nri-socket", rt.Socket,
		"--audit-log", filepath.Join(dir, "audit.jsonl"), "--node-name", "it-node",
		"--containerd-socket", "", "--http-addr", d.http, "--log-level", "debug"}, extra...)
	d.Daemon = daemontest.Run(t, daemontest.Options{Binary: daemontest.Binary(t), Args: args,
		// Never in a cluster here, whatever the environment says.
		Unset: []string{"KUBERNETES_SERVICE_"},
		Grace: waitFor,
	})
	if err := rt.WaitPlugin(waitFor); err != nil {
		t.Fatalf("the daemon did not register with NRI (%v); its log:\n%s", err, d.log())
	}
	return d
}

func (d *daemon) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + d.http + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestDaemonWritesTheCRIErrorAsEvent: the real daemon, given a kubeconfig
// with the plugin's ServiceAccount, refuses a container through NRI, and the
// Event on the Pod carries exactly the message of the runtime's error.
// Repeated refusals of the container make one Event series.
func TestDaemonWritesTheCRIErrorAsEvent(t *testing.T) {
	dir := t.TempDir()
	token := pluginConfig(t).BearerToken
	kc := filepath.Join(dir, "kubeconfig")
	if err := testCluster.Kubeconfig(kc, token); err != nil {
		t.Fatal(err)
	}
	rt := startNRI(t)
	d := startDaemon(t, rt, "--kubeconfig", kc)
	if code, body := d.get(t, "/readyz"); code != http.StatusOK {
		t.Errorf("/readyz after registering: %d %s", code, body)
	}

	in := podInput(newNamespace(t, "daemon"), "web-1", "app")
	var errs []string
	for i := range 3 {
		err := create(rt, in, fmt.Sprintf("ctr-%s-%d", in.PodUID[:8], i))
		if err == nil {
			t.Fatal("the runtime created a container the policy refuses")
		}
		errs = append(errs, err.Error())
	}
	evs := waitEvents(t, in, "one event with a series", func(evs []corev1.Event) bool {
		return len(evs) == 1 && evs[0].Series != nil
	})
	e := evs[0]
	if !strings.HasPrefix(e.Message, "nri-image-verifier: image "+in.Image+" ("+in.Digest+") denied by rule") {
		t.Errorf("event message %q", e.Message)
	}
	for _, cri := range errs {
		// The runtime wraps the plugin's message (kubelet shows the whole
		// thing); the Event carries the plugin's line itself.
		if !strings.Contains(cri, e.Message) {
			t.Errorf("the runtime's error does not carry the event's message:\nerror: %s\nevent: %s", cri, e.Message)
		}
	}
	if e.ReportingInstance != "it-node" || e.Reason != "ImageVerificationFailed" || e.Series.Count < 2 {
		t.Errorf("event instance %q reason %q series %+v", e.ReportingInstance, e.Reason, e.Series)
	}
	if !strings.Contains(d.log(), `"msg":"recording Kubernetes Events"`) {
		t.Error("the daemon did not log that it records Events")
	}

	_, metrics := d.get(t, "/metrics")
	for _, want := range []string{
		`nri_image_verifier_decisions_total{mode="enforce",validator="default",verdict="deny"} 3`,
		`nri_image_verifier_nri_connected 1`,
		`nri_image_verifier_event_api_writes_total{result="ok"}`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// TestDaemonWithoutAPIKeepsEnforcing: an API server that cannot be reached,
// or none at all, changes nothing for containers: each is refused as fast
// as usual, and the daemon says so in its log once.
func TestDaemonWithoutAPIKeepsEnforcing(t *testing.T) {
	ports, err := kubetest.FreePorts(1) // closed again at return: nothing listens
	if err != nil {
		t.Fatal(err)
	}
	down := &kubetest.Cluster{Host: fmt.Sprintf("https://127.0.0.1:%d", ports[0]), CAData: testCluster.CAData}
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := down.Kubeconfig(kc, "token"); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		flags   []string
		logLine string
	}{
		"unreachable": {flags: []string{"--kubeconfig", kc}, logLine: "cannot write Kubernetes Events"},
		"none":        {logLine: "Kubernetes Events are off"},
	} {
		t.Run(name, func(t *testing.T) {
			rt := startNRI(t)
			d := startDaemon(t, rt, tc.flags...)
			in := podInput("team", "web", "app")
			for i := range 5 {
				start := time.Now()
				if err := create(rt, in, fmt.Sprintf("ctr-%s-%d", name, i)); err == nil {
					t.Fatal("container created")
				}
				if took := time.Since(start); took > time.Second {
					t.Errorf("refusal %d took %v", i, took)
				}
			}
			deadline := time.Now().Add(waitFor)
			for !strings.Contains(d.log(), tc.logLine) {
				if time.Now().After(deadline) {
					t.Fatalf("the daemon never logged %q", tc.logLine)
				}
				time.Sleep(50 * time.Millisecond)
			}
			time.Sleep(500 * time.Millisecond) // more writes fail meanwhile
			if n := strings.Count(d.log(), tc.logLine); n != 1 {
				t.Errorf("%q logged %d times, want once", tc.logLine, n)
			}
		})
	}
}
