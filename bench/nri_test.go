package bench

import (
	"context"
	"io"
	"log/slog"
	"runtime"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"

	"github.com/nri-image-verifier/nri-image-verifier/internal/nritest"
	"github.com/nri-image-verifier/nri-image-verifier/plugin"
	"github.com/nri-image-verifier/nri-image-verifier/report"
)

// quiet is NRI's logger for the benchmark: nothing.
type quiet struct{}

func (quiet) Debugf(context.Context, string, ...any) {}
func (quiet) Infof(context.Context, string, ...any)  {}
func (quiet) Warnf(context.Context, string, ...any)  {}
func (quiet) Errorf(context.Context, string, ...any) {}

// nriRuntime is NRI's runtime side as containerd embeds it, on its own
// socket, with the default validator requiring the one plugin it serves
// (the deployment's configuration).
type nriRuntime struct {
	*nritest.Runtime
	socket string
}

func startNRI(t testing.TB, required string) *nriRuntime {
	t.Helper()
	r, err := nritest.New(nritest.Options{Required: []string{required}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	return &nriRuntime{Runtime: r, socket: r.Socket}
}

func (rt *nriRuntime) waitPlugin(t testing.TB) {
	t.Helper()
	if err := rt.WaitPlugin(30 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// create asks the runtime to create a new container of img in namespace,
// as containerd's CRI does (blocking plugin syncs meanwhile), and returns
// the time it took and the runtime's answer.
func (rt *nriRuntime) create(ctx context.Context, img image, namespace string) (time.Duration, error) {
	return rt.createNamed(ctx, img, img.name(), namespace)
}

// createNamed is create with the image known to the runtime by name.
func (rt *nriRuntime) createNamed(ctx context.Context, img image, name, namespace string) (time.Duration, error) {
	pod, ctr := nritest.Container(namespace, nritest.Image{Name: name, Digest: img.digest, ConfigDigest: img.config})
	return rt.CreateContainer(ctx, pod, ctr)
}

// noopPlugin answers both requests the gate answers, doing nothing: the
// cost of being an NRI plugin at all.
type noopPlugin struct{}

func (noopPlugin) CreateContainer(context.Context, *api.PodSandbox, *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	return nil, nil, nil
}

func (noopPlugin) ValidateContainerAdjustment(context.Context, *api.ValidateContainerAdjustmentRequest) error {
	return nil
}

func startNoop(t testing.TB, ctx context.Context, rt *nriRuntime) {
	t.Helper()
	s, err := stub.New(noopPlugin{}, stub.WithPluginName("noop"), stub.WithPluginIdx("10"),
		stub.WithSocketPath(rt.socket), stub.WithLogger(quiet{}))
	if err != nil {
		t.Fatal(err)
	}
	go s.Run(ctx)
	rt.waitPlugin(t)
}

// startGatePlugin runs the real plugin (plugin.New, the daemon's reporters
// minus Kubernetes Events) in process against rt.
func startGatePlugin(t testing.TB, ctx context.Context, rt *nriRuntime, g plugin.Decider) *plugin.Plugin {
	t.Helper()
	p, err := plugin.New(plugin.Config{Socket: rt.socket, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		g, daemonReporters())
	if err != nil {
		t.Fatal(err)
	}
	go p.Run(ctx)
	rt.waitPlugin(t)
	return p
}

// daemonReporters are what `run` reports every decision to (audit line,
// metrics); the audit line goes nowhere here.
func daemonReporters() plugin.Reporter {
	return report.Tee{report.NewAudit(io.Discard, "bench-node"), report.NewMetrics()}
}

type nriResult struct {
	n                   int
	ours, noop, slow    durations
	oursErr, noErr, slE int
}

// benchNRI measures warm decisions through the NRI socket: the same create
// request, in turns, to a runtime whose one plugin is the gate (verdict
// cached), to one whose one plugin does nothing, and to one whose plugin is
// the gate without its cached fast path (as before gate.DecideCached).
func benchNRI(t *testing.T, w *coldWorld, n int) nriResult {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	img := w.first["legacy"]
	g := newGate(t, policyFor(t, w.host, w.signer), w.reg, nil, nil)

	gateRT := startNRI(t, plugin.DefaultName)
	startGatePlugin(t, ctx, gateRT, g)
	noopRT := startNRI(t, "noop")
	startNoop(t, ctx, noopRT)
	slowRT := startNRI(t, plugin.DefaultName)
	startGatePlugin(t, ctx, slowRT, deciderOnly{g})

	// The first create verifies; it must be an allow.
	if _, err := gateRT.create(ctx, img, "default"); err != nil {
		t.Fatalf("first create: %v", err)
	}
	res := nriResult{n: n}
	type target struct {
		rt  *nriRuntime
		out *durations
		err *int
	}
	targets := []target{{gateRT, &res.ours, &res.oursErr}, {noopRT, &res.noop, &res.noErr}, {slowRT, &res.slow, &res.slE}}
	warm := min(n/10+10, 2000)
	for i := range warm + n {
		if i == warm {
			runtime.GC()
		}
		for j := range targets {
			tg := targets[(i+j)%len(targets)]
			d, err := tg.rt.create(ctx, img, "default")
			if i < warm {
				continue
			}
			if err != nil {
				*tg.err++
			}
			*tg.out = append(*tg.out, d)
		}
	}
	if res.oursErr+res.noErr+res.slE > 0 {
		t.Errorf("%d gate, %d no-op and %d gate (no fast path) creates failed", res.oursErr, res.noErr, res.slE)
	}
	if st := g.Cache().Stats(); st.Verifications != 1 {
		t.Errorf("%d verifications, want 1 (every later decision from the cache)", st.Verifications)
	}
	return res
}
