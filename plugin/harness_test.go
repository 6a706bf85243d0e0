package plugin

import (
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/adaptation"
	"github.com/containerd/nri/pkg/api"
	nrilog "github.com/containerd/nri/pkg/log"
	validator "github.com/containerd/nri/plugins/default-validator/builtin"

	"github.com/nri-image-verifier/nri-image-verifier/gate"
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
	nrilog.Set(nriLogger{slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("side", "runtime")})
	os.Exit(m.Run())
}

// testRuntime is the runtime side of NRI, run in-process like containerd
// runs it. The plugin does not dial the adaptation's socket directly but a
// relay in front of it: Adaptation.Stop closes its listener but not the
// connections of external plugins, which only a runtime process exit does.
// Stop severs the relayed connections to play that exit.
type testRuntime struct {
	t      *testing.T
	socket string // what the plugin dials
	inner  string // the adaptation's own socket
	opts   []adaptation.Option
	calls  *invocations

	r      *adaptation.Adaptation
	relay  *relay
	syncs  atomic.Int32
	synced chan struct{}
}

// newRuntime prepares a runtime on socket whose default validator requires
// our plugin, as the deployment configures containerd.
func newRuntime(t *testing.T, socket string) *testRuntime {
	t.Helper()
	dir := t.TempDir()
	rt := &testRuntime{
		t:      t,
		socket: socket,
		inner:  filepath.Join(dir, "nri-inner.sock"),
		calls:  &invocations{n: map[string]int{}},
		opts: []adaptation.Option{
			adaptation.WithPluginPath(filepath.Join(dir, "plugins")),
			adaptation.WithPluginConfigPath(filepath.Join(dir, "conf.d")),
			adaptation.WithDefaultValidator(&validator.DefaultValidatorConfig{
				Enable:          true,
				RequiredPlugins: []string{DefaultName},
			}),
		},
	}
	t.Cleanup(rt.Stop)
	return rt
}

// Start starts the adaptation and opens the socket.
func (rt *testRuntime) Start() {
	rt.t.Helper()
	rt.synced = make(chan struct{}, 16)
	rt.syncs.Store(0)
	opts := append([]adaptation.Option{
		adaptation.WithSocketPath(rt.inner),
		adaptation.WithMetrics(rt.calls),
	}, rt.opts...)
	r, err := adaptation.New("test-runtime", "v0.0.1", rt.sync, rt.update, opts...)
	if err != nil {
		rt.t.Fatalf("adaptation.New: %v", err)
	}
	if err := r.Start(); err != nil {
		rt.t.Fatalf("adaptation.Start: %v", err)
	}
	rt.r = r
	rt.relay = startRelay(rt.t, rt.socket, rt.inner)
}

// Stop plays a runtime exit: adaptation stopped, socket gone, connections
// closed.
func (rt *testRuntime) Stop() {
	if rt.r == nil {
		return
	}
	rt.r.Stop()
	rt.relay.stop()
	rt.r, rt.relay = nil, nil
}

func (rt *testRuntime) sync(ctx context.Context, cb adaptation.SyncCB) error {
	_, err := cb(ctx, nil, nil)
	// The first sync is Start's, for pre-installed plugins (none here).
	if rt.syncs.Add(1) > 1 && err == nil {
		select {
		case rt.synced <- struct{}{}:
		default:
		}
	}
	return err
}

func (rt *testRuntime) update(context.Context, []*api.ContainerUpdate) ([]*api.ContainerUpdate, error) {
	return nil, nil
}

// WaitPlugin waits until a plugin has synchronised and the adaptation has
// added it to its list (it does so under the sync lock, after the sync).
func (rt *testRuntime) WaitPlugin() {
	rt.t.Helper()
	select {
	case <-rt.synced:
	case <-time.After(wait):
		rt.t.Fatal("plugin did not connect to the runtime")
	}
	rt.r.BlockPluginSync().Unblock()
}

// CreateContainer sends a CreateContainer request as containerd does.
func (rt *testRuntime) CreateContainer(pod *api.PodSandbox, ctr *api.Container) error {
	b := rt.r.BlockPluginSync()
	defer b.Unblock()
	_, err := rt.r.CreateContainer(context.Background(), &api.CreateContainerRequest{Pod: pod, Container: ctr})
	return err
}

// invocations counts the adaptation's calls per plugin and request.
type invocations struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *invocations) RecordPluginInvocation(plugin, op string, _ error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n[plugin+" "+op]++
}

func (c *invocations) count(op string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[DefaultIndex+"-"+DefaultName+" "+op]
}

func (*invocations) RecordPluginLatency(string, string, time.Duration) {}
func (*invocations) RecordPluginAdjustments(string, string, *api.ContainerAdjustment, int, int) {
}
func (*invocations) UpdatePluginCount(int) {}

// relay forwards connections from front to back, and can sever them all.
type relay struct {
	l     net.Listener
	back  string
	mu    sync.Mutex
	conns []net.Conn
	done  chan struct{}
}

func startRelay(t *testing.T, front, back string) *relay {
	t.Helper()
	l, err := net.Listen("unix", front)
	if err != nil {
		t.Fatalf("relay: %v", err)
	}
	r := &relay{l: l, back: back, done: make(chan struct{})}
	go r.accept()
	return r
}

func (r *relay) accept() {
	defer close(r.done)
	for {
		c, err := r.l.Accept()
		if err != nil {
			return
		}
		b, err := net.Dial("unix", r.back)
		if err != nil {
			c.Close()
			continue
		}
		r.mu.Lock()
		r.conns = append(r.conns, c, b)
		r.mu.Unlock()
		go pipe(c, b)
		go pipe(b, c)
	}
}

// pipe copies until either side ends, then closes both, like a socket
// whose peer process exited.
func pipe(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
}

func (r *relay) stop() {
	r.l.Close() // also removes the socket file
	<-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conns {
		c.Close()
	}
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
