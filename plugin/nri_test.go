package plugin

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/adaptation"
	"github.com/containerd/nri/pkg/api"

	"github.com/nri-image-verifier/nri-image-verifier/gate"
)

// These tests drive the plugin through the real NRI runtime side
// (pkg/adaptation) over ttrpc, with the default validator requiring the
// plugin as the deployment configures containerd. The gate is faked.

// setRequestTimeout shortens the runtime's per-request timeout (a global
// of the adaptation package, so these tests do not run in parallel).
func setRequestTimeout(t *testing.T, d time.Duration) {
	adaptation.SetPluginRequestTimeout(d)
	t.Cleanup(func() { adaptation.SetPluginRequestTimeout(adaptation.DefaultPluginRequestTimeout) })
}

func TestAllowDecidesOnceForCreateAndValidate(t *testing.T) {
	sock := socketPath(t)
	rt := newRuntime(t, sock)
	rt.Start()
	dec, rep := &fakeDecider{fn: allow}, &fakeReporter{}
	p := startPlugin(t, Config{Socket: sock}, dec, rep)
	rt.WaitPlugin()
	if !p.Connected() {
		t.Fatal("Connected() = false after synchronisation")
	}

	if err := rt.CreateContainer(testPod(), testContainer("c1")); err != nil {
		t.Fatalf("allowed container refused: %v", err)
	}

	inputs, _ := dec.calls()
	want := gate.Input{Image: "127.0.0.1:5000/app:v1", Digest: testDigest, ConfigDigest: testConfig,
		Namespace: "shop", Pod: "web", PodUID: "uid-1", Container: "app", ContainerID: "c1"}
	if len(inputs) != 1 || inputs[0] != want {
		t.Fatalf("Decide calls = %+v, want one with %+v", inputs, want)
	}
	if n := len(rep.reports()); n != 1 {
		t.Errorf("reports = %d, want 1", n)
	}
	// Both hooks ran; the second reused the first's decision.
	if c, v := rt.Calls(DefaultIndex+"-"+DefaultName, "CreateContainer"), rt.Calls(DefaultIndex+"-"+DefaultName, "ValidateContainerAdjustment"); c != 1 || v != 1 {
		t.Errorf("runtime invoked CreateContainer %d and ValidateContainerAdjustment %d times, want 1 and 1", c, v)
	}
}

func TestDenyNamesImageDigestRuleAndReason(t *testing.T) {
	sock := socketPath(t)
	rt := newRuntime(t, sock)
	rt.Start()
	dec := &fakeDecider{fn: func(context.Context, gate.Input) gate.Decision {
		return gate.Decision{Verdict: gate.VerdictDeny, Image: "127.0.0.1:5000/app:v1",
			Rule: "127.0.0.1:5000/*", Validator: "cosign-prod", Reason: "no signature by trust root default"}
	}}
	rep := &fakeReporter{}
	startPlugin(t, Config{Socket: sock}, dec, rep)
	rt.WaitPlugin()

	err := rt.CreateContainer(testPod(), testContainer("c1"))
	if err == nil {
		t.Fatal("denied container was created")
	}
	t.Logf("runtime error: %v", err)
	for _, s := range []string{"127.0.0.1:5000/app:v1", testDigest, `rule "127.0.0.1:5000/*"`,
		"validator cosign-prod", "no signature by trust root default"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error lacks %q", s)
		}
	}
	if n := len(rep.reports()); n != 1 {
		t.Errorf("reports = %d, want 1", n)
	}
	// The runtime stops at the first error: validation is not reached.
	if v := rt.Calls(DefaultIndex+"-"+DefaultName, "ValidateContainerAdjustment"); v != 0 {
		t.Errorf("ValidateContainerAdjustment invoked %d times after a denial", v)
	}
}

func TestPendingDeniedBeforeRuntimeDeadline(t *testing.T) {
	// The plugin answers at the deadline minus Margin: 600 ms of slack for
	// a loaded CI machine under -race.
	const requestTimeout = 2 * time.Second
	const margin = 600 * time.Millisecond
	setRequestTimeout(t, requestTimeout)
	sock := socketPath(t)
	rt := newRuntime(t, sock)
	rt.Start()
	var slow atomic.Bool
	slow.Store(true)
	dec := &fakeDecider{fn: func(ctx context.Context, in gate.Input) gate.Decision {
		if !slow.Load() {
			return allow(ctx, in)
		}
		<-ctx.Done() // the gate gives up at the deadline
		return gate.Decision{Verdict: gate.VerdictDeny, Pending: true, Reason: "fetching signatures"}
	}}
	rep := &fakeReporter{}
	// A long Timeout, so that the runtime's deadline is the one that binds.
	p := startPlugin(t, Config{Socket: sock, Timeout: time.Minute, Margin: margin}, dec, rep)
	rt.WaitPlugin()

	start := time.Now()
	err := rt.CreateContainer(testPod(), testContainer("c1"))
	elapsed := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "verification still running (fetching signatures); will be retried") {
		t.Fatalf("want a pending denial, got %v", err)
	}
	if elapsed >= requestTimeout {
		t.Errorf("answered after %v, not before the runtime's %v deadline", elapsed, requestTimeout)
	}
	if strings.Contains(err.Error(), "deadline exceeded") {
		t.Errorf("the runtime timed the plugin out: %v", err)
	}
	_, left := dec.calls()
	if len(left) != 1 || left[0] <= 0 || left[0] > requestTimeout-margin {
		t.Errorf("decider saw %v to its deadline, want (0, %v]", left, requestTimeout-margin)
	}
	if r := rep.reports(); len(r) != 1 || !r[0].Pending {
		t.Errorf("reports = %+v, want one pending", r)
	}

	// Answering in time kept the plugin registered.
	slow.Store(false)
	if err := rt.CreateContainer(testPod(), testContainer("c2")); err != nil {
		t.Fatalf("next container: %v", err)
	}
	if !p.Connected() {
		t.Error("plugin lost its connection")
	}
}

func TestDecisionDeadlineWithinTimeout(t *testing.T) {
	sock := socketPath(t)
	rt := newRuntime(t, sock)
	rt.Start()
	dec := &fakeDecider{fn: allow}
	const timeout = 300 * time.Millisecond
	startPlugin(t, Config{Socket: sock, Timeout: timeout}, dec, &fakeReporter{})
	rt.WaitPlugin()

	if err := rt.CreateContainer(testPod(), testContainer("c1")); err != nil {
		t.Fatal(err)
	}
	// The runtime's deadline (2s by default) is later: Timeout binds.
	if _, left := dec.calls(); len(left) != 1 || left[0] <= 0 || left[0] > timeout {
		t.Errorf("decider saw %v to its deadline, want (0, %v]", left, timeout)
	}
}

// A Decider that ignores its deadline must not make the plugin overrun the
// runtime's: that gets the plugin dropped.
func TestDeciderOverrunDeniedInTime(t *testing.T) {
	// Generous margins: the plugin answers at budget + Margin/2 (1.6 s),
	// which leaves 400 ms for a loaded CI machine under -race.
	const requestTimeout = 2 * time.Second
	setRequestTimeout(t, requestTimeout)
	sock := socketPath(t)
	rt := newRuntime(t, sock)
	rt.Start()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	dec := &fakeDecider{fn: func(context.Context, gate.Input) gate.Decision {
		<-release
		return gate.Decision{Allowed: true}
	}}
	rep := &fakeReporter{}
	p := startPlugin(t, Config{Socket: sock, Timeout: time.Minute, Margin: 800 * time.Millisecond}, dec, rep)
	rt.WaitPlugin()

	start := time.Now()
	err := rt.CreateContainer(testPod(), testContainer("c1"))
	elapsed := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "verification still running") {
		t.Fatalf("want a pending denial, got %v", err)
	}
	if elapsed >= requestTimeout {
		t.Errorf("answered after %v, not before the runtime's %v deadline", elapsed, requestTimeout)
	}
	if r := rep.reports(); len(r) != 1 || !r[0].Pending || r[0].Allowed {
		t.Errorf("reports = %+v, want one pending denial", r)
	}
	if !p.Connected() {
		t.Error("plugin lost its connection")
	}
}

func TestMissingDigestUsesAnnotation(t *testing.T) {
	sock := socketPath(t)
	rt := newRuntime(t, sock)
	rt.Start()
	dec := &fakeDecider{fn: func(_ context.Context, in gate.Input) gate.Decision {
		if in.Digest == "" { // what the gate does
			return gate.Decision{Verdict: gate.VerdictDeny, Reason: "image digest unknown"}
		}
		return gate.Decision{Allowed: true}
	}}
	startPlugin(t, Config{Socket: sock}, dec, &fakeReporter{})
	rt.WaitPlugin()

	ctr := testContainer("c1")
	ctr.Image = nil // containerd < 2.4
	ctr.Annotations[imageNameAnnotation] = "docker.io/library/redis:7"
	err := rt.CreateContainer(testPod(), ctr)
	if err == nil || !strings.Contains(err.Error(), "image docker.io/library/redis:7 (digest unknown)") {
		t.Fatalf("want a denial for the unknown digest, got %v", err)
	}
	inputs, _ := dec.calls()
	if len(inputs) != 1 || inputs[0].Image != "docker.io/library/redis:7" || inputs[0].Digest != "" {
		t.Errorf("Decide inputs = %+v, want Image from the annotation and no digest", inputs)
	}
}

// Fail closed: with the default validator requiring the plugin, a runtime
// that does not have it connected refuses containers.
func TestRuntimeRefusesWithoutPlugin(t *testing.T) {
	sock := socketPath(t)
	rt := newRuntime(t, sock)
	rt.Start()

	err := rt.CreateContainer(testPod(), testContainer("c1"))
	if err == nil {
		t.Fatal("container created with the required plugin absent")
	}
	t.Logf("runtime error: %v", err)
	if !strings.Contains(err.Error(), `required plugin "`+DefaultName+`" not present`) {
		t.Errorf("unexpected refusal: %v", err)
	}

	startPlugin(t, Config{Socket: sock}, &fakeDecider{fn: allow}, &fakeReporter{})
	rt.WaitPlugin()
	if err := rt.CreateContainer(testPod(), testContainer("c2")); err != nil {
		t.Fatalf("after connecting: %v", err)
	}
}

// The plugin starts before the runtime, and the runtime restarts: the plugin
// connects, reconnects, and decisions work each time.
func TestReconnectsAfterRuntimeRestart(t *testing.T) {
	sock := socketPath(t)
	rt := newRuntime(t, sock)
	dec, rep := &fakeDecider{fn: allow}, &fakeReporter{}
	p := startPlugin(t, Config{Socket: sock}, dec, rep)
	if p.Connected() {
		t.Fatal("connected without a runtime")
	}

	rt.Start() // socket appears while the plugin is retrying
	rt.WaitPlugin()
	if err := rt.CreateContainer(testPod(), testContainer("c1")); err != nil {
		t.Fatalf("first runtime: %v", err)
	}

	rt.Stop()
	eventually(t, "plugin to notice the runtime exit", func() bool { return !p.Connected() })
	rt.Start()
	rt.WaitPlugin()
	if err := rt.CreateContainer(testPod(), testContainer("c2")); err != nil {
		t.Fatalf("restarted runtime: %v", err)
	}
	if !p.Connected() {
		t.Error("Connected() = false after reconnecting")
	}
	if inputs, _ := dec.calls(); len(inputs) != 2 {
		t.Errorf("Decide called %d times, want 2", len(inputs))
	}
	if n := len(rep.reports()); n != 2 {
		t.Errorf("reports = %d, want 2", n)
	}
}

// A hook that hangs past the runtime's timeout (here a Reporter that
// blocks) must not let the container through. The plugin's failure policy
// makes the runtime fail the request; it drops the plugin, which
// reconnects.
func TestHungHookFailsClosed(t *testing.T) {
	const requestTimeout = 500 * time.Millisecond
	setRequestTimeout(t, requestTimeout)
	sock := socketPath(t)
	rt := newRuntime(t, sock)
	rt.Start()
	release := make(chan struct{})
	var released atomic.Bool
	t.Cleanup(func() {
		if !released.Swap(true) {
			close(release)
		}
	})
	rep := &fakeReporter{block: release}
	p := startPlugin(t, Config{Socket: sock}, &fakeDecider{fn: allow}, rep)
	rt.WaitPlugin()

	err := rt.CreateContainer(testPod(), testContainer("c1"))
	if err == nil {
		t.Fatal("container created while the plugin hung")
	}
	t.Logf("runtime error: %v", err)
	if !strings.Contains(err.Error(), "failed to handle CreateContainer request") {
		t.Errorf("unexpected error: %v", err)
	}

	released.Store(true)
	close(release)
	eventually(t, "the dropped plugin to disconnect", func() bool { return !p.Connected() })
	rt.WaitPlugin()
	if err := rt.CreateContainer(testPod(), testContainer("c2")); err != nil {
		t.Fatalf("after reconnecting: %v", err)
	}
}

// Validation normally follows an allowed CreateContainer; these calls go
// to the handlers directly to cover the other orders.
func TestValidateReusesDecision(t *testing.T) {
	ctx := t.Context()
	deny := func(context.Context, gate.Input) gate.Decision {
		return gate.Decision{Verdict: gate.VerdictDeny, Rule: "*", Validator: "deny", Reason: "denied"}
	}
	dec, rep := &fakeDecider{fn: deny}, &fakeReporter{}
	p, err := New(Config{Logger: testLogger(t)}, dec, rep)
	if err != nil {
		t.Fatal(err)
	}
	pod, ctr := testPod(), testContainer("c1")

	_, _, createErr := p.CreateContainer(ctx, pod, ctr)
	if createErr == nil {
		t.Fatal("CreateContainer allowed")
	}
	validateErr := p.ValidateContainerAdjustment(ctx, &api.ValidateContainerAdjustmentRequest{Pod: pod, Container: ctr})
	if validateErr == nil || validateErr.Error() != createErr.Error() {
		t.Errorf("validation after a denial: %v, want %v", validateErr, createErr)
	}
	if inputs, _ := dec.calls(); len(inputs) != 1 || len(rep.reports()) != 1 {
		t.Errorf("Decide %d, Report %d times, want 1 and 1", len(inputs), len(rep.reports()))
	}

	// Validation without a remembered decision decides and reports.
	if err := p.ValidateContainerAdjustment(ctx, &api.ValidateContainerAdjustmentRequest{Pod: pod, Container: testContainer("c2")}); err == nil {
		t.Error("validation-only decision allowed")
	}
	// Another image under a known ID is not the container decided before.
	other := testContainer("c1")
	other.Image.Digest = "sha256:" + strings.Repeat("3", 64)
	if err := p.ValidateContainerAdjustment(ctx, &api.ValidateContainerAdjustmentRequest{Pod: pod, Container: other}); err == nil {
		t.Error("changed image allowed")
	}
	if inputs, _ := dec.calls(); len(inputs) != 3 || len(rep.reports()) != 3 {
		t.Errorf("Decide %d, Report %d times, want 3 and 3", len(inputs), len(rep.reports()))
	}
}

type fakeResolver struct{ name, digest, config string }

func (f fakeResolver) Resolve(context.Context, string, string) (Image, error) {
	return Image{Name: f.name, Digest: f.digest, ConfigDigest: f.config}, nil
}

func (f fakeResolver) Lookup(ctx context.Context, ref string) (Image, error) {
	return f.Resolve(ctx, "", ref)
}

func TestResolverFillsMissingDigest(t *testing.T) {
	dec, rep := &fakeDecider{fn: allow}, &fakeReporter{}
	p, err := New(Config{Logger: testLogger(t), Resolver: fakeResolver{"127.0.0.1:5000/resolved:v1", testDigest, testConfig}}, dec, rep)
	if err != nil {
		t.Fatal(err)
	}
	ctr := testContainer("c1")
	ctr.Image = nil
	if _, _, err := p.CreateContainer(t.Context(), testPod(), ctr); err != nil {
		t.Fatal(err)
	}
	inputs, _ := dec.calls()
	if len(inputs) != 1 || inputs[0].Digest != testDigest || inputs[0].ConfigDigest != testConfig ||
		inputs[0].Image != "127.0.0.1:5000/resolved:v1" {
		t.Errorf("Decide inputs = %+v, want resolved digests", inputs)
	}
	if rep.in[0] != inputs[0] {
		t.Errorf("reported %+v, decided %+v", rep.in[0], inputs[0])
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	d, r := &fakeDecider{fn: allow}, &fakeReporter{}
	for name, tc := range map[string]struct {
		cfg Config
		d   Decider
		r   Reporter
	}{
		"nil decider":  {Config{}, nil, r},
		"nil reporter": {Config{}, d, nil},
		"bad index":    {Config{Index: "1"}, d, r},
		"bad name":     {Config{Name: "image verifier"}, d, r},
		"negative":     {Config{Margin: -time.Second}, d, r},
	} {
		if _, err := New(tc.cfg, tc.d, tc.r); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
}
