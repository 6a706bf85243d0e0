package plugin

import (
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"

	"github.com/nri-image-verifier/nri-image-verifier/gate"
	"github.com/nri-image-verifier/nri-image-verifier/internal/nritest"
)

// wait bounds every wait in these tests. Generous: it only matters when
// something is broken.
const wait = 10 * time.Second

func TestMain(m *testing.M) {
	flag.Parse()
	// The adaptation logs through NRI's global logger; keep it to warnings
	// unless -v.
	level := slog.LevelWarn
	if testing.Verbose() {
		level = slog.LevelDebug
	}
	nritest.Logs(os.Stderr, level)
	os.Exit(m.Run())
}

// testRuntime is the runtime side of NRI, run in-process like containerd
// runs it, behind a relay so that Stop plays a runtime process exit (see
// nritest.Runtime).
type testRuntime struct {
	*nritest.Runtime
	t *testing.T
}

// newRuntime prepares a runtime on socket whose default validator requires
// our plugin, as the deployment configures containerd.
func newRuntime(t *testing.T, socket string) *testRuntime {
	t.Helper()
	r, err := nritest.New(nritest.Options{Required: []string{DefaultName}, Socket: socket, Severable: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return &testRuntime{Runtime: r, t: t}
}

// Start starts the adaptation and opens the socket.
func (rt *testRuntime) Start() {
	rt.t.Helper()
	if err := rt.Runtime.Start(); err != nil {
		rt.t.Fatal(err)
	}
}

// WaitPlugin waits until a plugin has synchronised and the adaptation has
// added it to its list.
func (rt *testRuntime) WaitPlugin() {
	rt.t.Helper()
	if err := rt.Runtime.WaitPlugin(wait); err != nil {
		rt.t.Fatal(err)
	}
}

// CreateContainer sends a CreateContainer request as containerd does.
func (rt *testRuntime) CreateContainer(pod *api.PodSandbox, ctr *api.Container) error {
	_, err := rt.Runtime.CreateContainer(context.Background(), pod, ctr)
	return err
}

// fakeDecider records its calls and answers with fn.
type fakeDecider struct {
	fn func(ctx context.Context, in gate.Input) gate.Decision

	mu     sync.Mutex
	inputs []gate.Input
	left   []time.Duration // time to the ctx deadline at the call, -1 without
}

func (f *fakeDecider) Decide(ctx context.Context, in gate.Input) gate.Decision {
	left := time.Duration(-1)
	if d, ok := ctx.Deadline(); ok {
		left = time.Until(d)
	}
	f.mu.Lock()
	f.inputs = append(f.inputs, in)
	f.left = append(f.left, left)
	f.mu.Unlock()
	return f.fn(ctx, in)
}

func (f *fakeDecider) calls() ([]gate.Input, []time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]gate.Input(nil), f.inputs...), append([]time.Duration(nil), f.left...)
}

func allow(context.Context, gate.Input) gate.Decision {
	return gate.Decision{Allowed: true, Verdict: gate.VerdictAllow, Reason: "signed"}
}

// fakeReporter records reports; if block is set, Report waits on it.
type fakeReporter struct {
	block chan struct{}

	mu  sync.Mutex
	got []gate.Decision
	in  []gate.Input
}

func (f *fakeReporter) Report(in gate.Input, d gate.Decision) {
	if f.block != nil {
		<-f.block
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.in = append(f.in, in)
	f.got = append(f.got, d)
}

func (f *fakeReporter) reports() []gate.Decision {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]gate.Decision(nil), f.got...)
}

// startPlugin runs a plugin on socket until the test ends.
func startPlugin(t *testing.T, cfg Config, d Decider, r Reporter) *Plugin {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	p, err := New(cfg, d, r)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(wait):
			t.Error("Run did not return after cancel")
		}
	})
	return p
}

// testLogger logs to the test output until the test ends; goroutines that
// outlive it (a discarded late decision) must not write to a finished test.
func testLogger(t *testing.T) *slog.Logger {
	w := &testWriter{w: t.Output()}
	t.Cleanup(w.close)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct {
	mu     sync.Mutex
	w      io.Writer
	closed bool
}

func (w *testWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, errors.New("test finished")
	}
	return w.w.Write(b)
}

func (w *testWriter) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
}

// eventually polls cond until it holds or the wait runs out.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func testContainer(id string) *api.Container {
	return &api.Container{
		Id:           id,
		PodSandboxId: "pod-id",
		Name:         "app",
		State:        api.ContainerState_CONTAINER_CREATED,
		Image:        &api.Image{Name: "127.0.0.1:5000/app:v1", Digest: testDigest, ConfigDigest: testConfig},
		Annotations:  map[string]string{imageNameAnnotation: "127.0.0.1:5000/app:v1"},
	}
}

func socketPath(t *testing.T) string {
	return filepath.Join(t.TempDir(), "nri.sock")
}
