// Package nritest runs NRI's runtime side (pkg/adaptation, what containerd
// embeds) in process for tests and benchmarks: the default validator
// requiring the plugin under test, as the deployment configures containerd,
// and containers created as containerd's CRI creates them.
package nritest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/nri/pkg/adaptation"
	"github.com/containerd/nri/pkg/api"
	nrilog "github.com/containerd/nri/pkg/log"
	validator "github.com/containerd/nri/plugins/default-validator/builtin"
)

// Runtime is NRI's runtime side with the default validator requiring the
// plugins named in Options.Required. With Options.Severable the plugin
// dials a relay in front of the adaptation's socket, so that Stop can sever
// the connections as a runtime process exit does (Adaptation.Stop closes
// its listener but not the plugins' connections).
type Runtime struct {
	Socket string // what the plugin dials

	opts  Options
	dir   string
	inner string

	mu     sync.Mutex
	r      *adaptation.Adaptation
	relay  *relay
	syncs  atomic.Int32
	synced chan struct{}

	hooks hookStats
}

// Options configure a Runtime.
type Options struct {
	// Required are the plugins the default validator requires.
	Required []string
	// Socket is where the plugin dials; empty: nri.sock in the runtime's
	// own folder.
	Socket string
	// Severable puts the relay in front of the socket (see Runtime).
	Severable bool
}

// New prepares a runtime in a fresh folder; call Start, and Close when done.
func New(opts Options) (*Runtime, error) {
	// Unix socket paths are limited to 108 bytes: a short folder.
	dir, err := os.MkdirTemp("", "niv-nri-")
	if err != nil {
		return nil, err
	}
	rt := &Runtime{Socket: opts.Socket, opts: opts, dir: dir, inner: filepath.Join(dir, "nri-inner.sock")}
	if rt.Socket == "" {
		rt.Socket = filepath.Join(dir, "nri.sock")
	}
	if !opts.Severable {
		rt.inner = rt.Socket
	}
	rt.hooks.ops = map[string]int{}
	return rt, nil
}

// Start starts the adaptation and opens the socket.
func (rt *Runtime) Start() error {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.synced = make(chan struct{}, 16)
	rt.syncs.Store(0)
	r, err := adaptation.New("nritest-runtime", "v0.0.1", rt.sync, rt.update,
		adaptation.WithSocketPath(rt.inner),
		adaptation.WithMetrics(&rt.hooks),
		adaptation.WithPluginPath(filepath.Join(rt.dir, "plugins")),
		adaptation.WithPluginConfigPath(filepath.Join(rt.dir, "conf.d")),
		adaptation.WithDefaultValidator(&validator.DefaultValidatorConfig{
			Enable:          true,
			RequiredPlugins: rt.opts.Required,
		}),
	)
	if err != nil {
		return fmt.Errorf("adaptation.New: %w", err)
	}
	if err := r.Start(); err != nil {
		return fmt.Errorf("adaptation.Start: %w", err)
	}
	if rt.opts.Severable {
		rl, err := startRelay(rt.Socket, rt.inner)
		if err != nil {
			r.Stop()
			return err
		}
		rt.relay = rl
	}
	rt.r = r
	return nil
}

// Stop plays a runtime exit: adaptation stopped, socket gone, connections
// closed.
func (rt *Runtime) Stop() {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.r == nil {
		return
	}
	rt.r.Stop()
	if rt.relay != nil {
		rt.relay.stop()
	}
	rt.r, rt.relay = nil, nil
}

// Close stops the runtime and removes its directory.
func (rt *Runtime) Close() {
	rt.Stop()
	_ = os.RemoveAll(rt.dir)
}

func (rt *Runtime) sync(ctx context.Context, cb adaptation.SyncCB) error {
	_, err := cb(ctx, nil, nil)
	// The first sync is Start's own, before any plugin connected.
	if rt.syncs.Add(1) > 1 && err == nil {
		select {
		case rt.synced <- struct{}{}:
		default:
		}
	}
	return err
}

func (rt *Runtime) update(context.Context, []*api.ContainerUpdate) ([]*api.ContainerUpdate, error) {
	return nil, nil
}

// WaitPlugin waits until a plugin has registered and synchronised.
func (rt *Runtime) WaitPlugin(timeout time.Duration) error {
	rt.mu.Lock()
	ch, r := rt.synced, rt.r
	rt.mu.Unlock()
	select {
	case <-ch:
	case <-time.After(timeout):
		return fmt.Errorf("no plugin registered within %s", timeout)
	}
	// The adaptation adds the plugin under the sync lock, after the sync.
	r.BlockPluginSync().Unblock()
	return nil
}

// Image is what containerd >= 2.4 tells NRI about a container's image.
type Image struct {
	Name, Digest, ConfigDigest string
}

var ctrSeq atomic.Int64

// Container returns a new pod in namespace and a container of it of img,
// with unique IDs, as containerd's CRI describes them to NRI.
func Container(namespace string, img Image) (*api.PodSandbox, *api.Container) {
	n := ctrSeq.Add(1)
	pod := &api.PodSandbox{Id: fmt.Sprintf("pod-%d", n), Name: fmt.Sprintf("pod-%d", n),
		Namespace: namespace, Uid: fmt.Sprintf("uid-%d", n)}
	ctr := &api.Container{Id: fmt.Sprintf("ctr-%d", n), PodSandboxId: pod.Id, Name: "app",
		State: api.ContainerState_CONTAINER_CREATED,
		Image: &api.Image{Name: img.Name, Digest: img.Digest, ConfigDigest: img.ConfigDigest}}
	return pod, ctr
}

// Create asks the runtime to create a container of img in namespace, as
// containerd does, and returns the runtime's error (nil: created) and how
// long the runtime took to answer.
func (rt *Runtime) Create(namespace string, img Image) (time.Duration, error) {
	pod, ctr := Container(namespace, img)
	return rt.CreateContainer(context.Background(), pod, ctr)
}

// CreateContainer asks the runtime to create ctr in pod, blocking plugin
// registration meanwhile as containerd's CRI does.
func (rt *Runtime) CreateContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) (time.Duration, error) {
	rt.mu.Lock()
	r := rt.r
	rt.mu.Unlock()
	if r == nil {
		return 0, fmt.Errorf("runtime stopped")
	}
	b := r.BlockPluginSync()
	defer b.Unblock()
	start := time.Now()
	_, err := r.CreateContainer(ctx, &api.CreateContainerRequest{Pod: pod, Container: ctr})
	return time.Since(start), err
}

// Hooks returns how many requests the runtime made to plugins, how many
// failed, and the longest a plugin took to answer one: per request, not
// counting the time a request queued behind others (NRI serialises them).
func (rt *Runtime) Hooks() (calls, failed int64, slowest time.Duration) {
	return rt.hooks.calls.Load(), rt.hooks.failed.Load(), time.Duration(rt.hooks.slowest.Load())
}

// Calls returns how many requests of operation op (e.g. "CreateContainer",
// "ValidateContainerAdjustment") the runtime made to plugin, named as NRI
// names it ("10-nri-image-verifier"; the built-in validator counts too).
func (rt *Runtime) Calls(plugin, op string) int {
	rt.hooks.mu.Lock()
	defer rt.hooks.mu.Unlock()
	return rt.hooks.ops[plugin+" "+op]
}

// ResetHooks zeroes what Hooks and Calls report.
func (rt *Runtime) ResetHooks() {
	rt.hooks.calls.Store(0)
	rt.hooks.failed.Store(0)
	rt.hooks.slowest.Store(0)
	rt.hooks.mu.Lock()
	clear(rt.hooks.ops)
	rt.hooks.mu.Unlock()
}

// hookStats is the adaptation's metrics sink.
type hookStats struct {
	calls, failed, slowest atomic.Int64

	mu  sync.Mutex
	ops map[string]int
}

func (h *hookStats) RecordPluginInvocation(plugin, op string, err error) {
	h.calls.Add(1)
	if err != nil {
		h.failed.Add(1)
	}
	h.mu.Lock()
	h.ops[plugin+" "+op]++
	h.mu.Unlock()
}

func (h *hookStats) RecordPluginLatency(_, _ string, d time.Duration) {
	for {
		old := h.slowest.Load()
		if int64(d) <= old || h.slowest.CompareAndSwap(old, int64(d)) {
			return
		}
	}
}

func (h *hookStats) RecordPluginAdjustments(string, string, *api.ContainerAdjustment, int, int) {}
func (h *hookStats) UpdatePluginCount(int)                                                      {}

// Logs sends NRI's global logger (the runtime side's) to w at level and
// above. A process has one; call it from TestMain.
func Logs(w io.Writer, level slog.Level) {
	nrilog.Set(slogNRI{slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})).With("side", "runtime")})
}

type slogNRI struct{ l *slog.Logger }

func (n slogNRI) Debugf(ctx context.Context, f string, a ...any) {
	n.l.DebugContext(ctx, fmt.Sprintf(f, a...))
}
func (n slogNRI) Infof(ctx context.Context, f string, a ...any) {
	n.l.InfoContext(ctx, fmt.Sprintf(f, a...))
}
func (n slogNRI) Warnf(ctx context.Context, f string, a ...any) {
	n.l.WarnContext(ctx, fmt.Sprintf(f, a...))
}
func (n slogNRI) Errorf(ctx context.Context, f string, a ...any) {
	n.l.ErrorContext(ctx, fmt.Sprintf(f, a...))
}

// relay forwards unix connections from front to back and can sever them.
// Adaptation.Stop closes its listener but not external plugins'
// connections, which only a runtime process exit does.
type relay struct {
	l     net.Listener
	back  string
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func startRelay(front, back string) (*relay, error) {
	l, err := net.Listen("unix", front)
	if err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	r := &relay{l: l, back: back}
	r.wg.Add(1)
	go r.accept()
	return r, nil
}

func (r *relay) accept() {
	defer r.wg.Done()
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
		r.wg.Add(2)
		go r.pipe(c, b)
		go r.pipe(b, c)
	}
}

// pipe copies until either side ends, then closes both, like a socket
// whose peer process exited.
func (r *relay) pipe(dst, src net.Conn) {
	defer r.wg.Done()
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
}

func (r *relay) stop() {
	r.l.Close() // also removes the socket file
	r.mu.Lock()
	for _, c := range r.conns {
		c.Close()
	}
	r.conns = nil
	r.mu.Unlock()
	r.wg.Wait()
}
