package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"

	"github.com/nri-image-verifier/nri-image-verifier/gate"
	"github.com/nri-image-verifier/nri-image-verifier/plugin"
	"github.com/nri-image-verifier/nri-image-verifier/verify"
)

// burstKinds are the 10 distinct images of the burst: 8 signed (legacy,
// bundle, a signed index), 2 unsigned.
var burstKinds = []string{"legacy", "legacy", "legacy", "legacy", "bundle", "bundle", "bundle", "index", "unsigned", "unsigned"}

type burstResult struct {
	creates, images       int
	wall                  time.Duration
	latency               durations
	wrong, pending        int
	runs, digests         int
	requests              int
	nriWall               time.Duration
	nriRuns, nriWrong     int
	nriPending, nriCreate int
}

// pushBurst pushes the burst's images, each in a repository of its own.
func pushBurst(t *testing.T, w *coldWorld, tag string) []image {
	var imgs []image
	for i, k := range burstKinds {
		imgs = append(imgs, pushSigned(t, w.host, fmt.Sprintf("burst-%s/app%d", tag, i), k, w.signer))
	}
	return imgs
}

func newPlugin(t testing.TB, g *gate.Gate) *plugin.Plugin {
	t.Helper()
	p, err := plugin.New(plugin.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, g, daemonReporters())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func container(n int64, img image) (*api.PodSandbox, *api.Container) {
	pod := &api.PodSandbox{Id: fmt.Sprintf("pod-%d", n), Name: fmt.Sprintf("pod-%d", n), Namespace: "default", Uid: fmt.Sprintf("uid-%d", n)}
	ctr := &api.Container{Id: fmt.Sprintf("ctr-%d", n), PodSandboxId: pod.Id, Name: "app",
		Image: &api.Image{Name: img.name(), Digest: img.digest, ConfigDigest: img.config}}
	return pod, ctr
}

// benchBurst creates n containers over the 10 images at once, on a cold
// cache and a registry client that has seen none of the repositories:
// directly on the plugin's handler (as many at a time as there are
// creates), then through NRI, which serialises them.
func benchBurst(t *testing.T, w *coldWorld, n int) burstResult {
	res := burstResult{creates: n, images: len(burstKinds)}
	imgs := pushBurst(t, w, "direct")
	tr := newTracer()
	var counter countingVerifications
	g := newGate(t, policyFor(t, w.host, w.signer), newRegistryClient(t, tr), verify.NewCache(verify.CacheOptions{}), &counter)
	p := newPlugin(t, g)

	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		start = make(chan struct{})
	)
	for i := range n {
		img := imgs[i%len(imgs)]
		pod, ctr := container(int64(i), img)
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			// The deadline NRI gives a request (plugin_request_timeout).
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			t0 := time.Now()
			_, _, err := p.CreateContainer(ctx, pod, ctr)
			took := time.Since(t0)
			mu.Lock()
			defer mu.Unlock()
			res.latency = append(res.latency, took)
			if (err == nil) != img.signed {
				res.wrong++
				t.Errorf("%s (%s): %v", img.ref(), img.kind, err)
			}
			if err != nil && isPending(err) {
				res.pending++
			}
		}()
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	res.wall = time.Since(t0)
	res.runs, res.digests = counter.total()
	res.requests = len(tr.take())
	if res.runs != len(imgs) {
		t.Errorf("%d verifications for %d images", res.runs, len(imgs))
	}

	// Through NRI: the runtime serialises the requests.
	imgs = pushBurst(t, w, "nri")
	var counter2 countingVerifications
	g = newGate(t, policyFor(t, w.host, w.signer), newRegistryClient(t, newTracer()), verify.NewCache(verify.CacheOptions{}), &counter2)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rt := startNRI(t, plugin.DefaultName)
	startGatePlugin(t, ctx, rt, g)
	var nwg sync.WaitGroup
	var wrong, pending atomic.Int32
	start = make(chan struct{})
	for i := range n {
		img := imgs[i%len(imgs)]
		nwg.Add(1)
		go func() {
			defer nwg.Done()
			<-start
			_, err := rt.create(context.Background(), img, "default")
			if (err == nil) != img.signed {
				wrong.Add(1)
				t.Errorf("through NRI: %s (%s): %v", img.ref(), img.kind, err)
			}
			if err != nil && isPending(err) {
				pending.Add(1)
			}
		}()
	}
	t0 = time.Now()
	close(start)
	nwg.Wait()
	res.nriWall = time.Since(t0)
	res.nriRuns, _ = counter2.total()
	res.nriWrong, res.nriPending, res.nriCreate = int(wrong.Load()), int(pending.Load()), n
	if res.nriRuns != len(imgs) {
		t.Errorf("through NRI: %d verifications for %d images", res.nriRuns, len(imgs))
	}
	return res
}

func isPending(err error) bool {
	return err != nil && contains(err.Error(), "verification still running")
}

type throughputResult struct {
	gateRate, pluginRate, slowRate       float64
	goroutines                           int
	gateAllocs, pluginAllocs, slowAllocs float64
}

// deciderOnly hides gate.Gate's DecideCached: the plugin then takes the
// path every decision took before it existed (a goroutine and a deadline
// around Decide), for comparison.
type deciderOnly struct{ g *gate.Gate }

func (d deciderOnly) Decide(ctx context.Context, in gate.Input) gate.Decision {
	return d.g.Decide(ctx, in)
}

// benchThroughput measures warm decisions per second in process, with as
// many goroutines as twice GOMAXPROCS, for d each: the gate alone, then
// the plugin's handler (memo, deadline, audit line, metrics).
func benchThroughput(t *testing.T, w *coldWorld, d time.Duration) throughputResult {
	imgs := pushBurst(t, w, "warm")
	g := newGate(t, policyFor(t, w.host, w.signer), w.reg, nil, nil)
	p := newPlugin(t, g)
	ctx := context.Background()
	for i, img := range imgs {
		pod, ctr := container(int64(i), img)
		p.CreateContainer(ctx, pod, ctr) // verifies
	}
	inputs := make([]gate.Input, len(imgs))
	for i, img := range imgs {
		inputs[i] = gate.Input{Image: img.name(), Digest: img.digest, ConfigDigest: img.config, Namespace: "default"}
	}
	res := throughputResult{goroutines: 2 * runtimeProcs()}

	run := func(one func(i int64)) float64 {
		var total atomic.Int64
		var stop atomic.Bool
		var wg sync.WaitGroup
		for range res.goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var n int64
				for !stop.Load() {
					one(total.Add(1))
					n++
				}
			}()
		}
		t0 := time.Now()
		time.Sleep(d)
		stop.Store(true)
		wg.Wait()
		return float64(total.Load()) / time.Since(t0).Seconds()
	}
	res.gateRate = run(func(i int64) {
		if dec := g.Decide(ctx, inputs[i%int64(len(inputs))]); !dec.CacheHit {
			t.Error("not a cache hit")
		}
	})
	// Containers for the plugin: new IDs, as each create is a new container.
	const pool = 1 << 16
	pods := make([]*api.PodSandbox, pool)
	ctrs := make([]*api.Container, pool)
	for i := range pool {
		pods[i], ctrs[i] = container(int64(1000+i), imgs[i%len(imgs)])
	}
	res.pluginRate = run(func(i int64) {
		j := i % pool
		p.CreateContainer(ctx, pods[j], ctrs[j])
	})
	slow, err := plugin.New(plugin.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, deciderOnly{g}, daemonReporters())
	if err != nil {
		t.Fatal(err)
	}
	res.slowRate = run(func(i int64) {
		j := i % pool
		slow.CreateContainer(ctx, pods[j], ctrs[j])
	})

	in := inputs[0]
	res.gateAllocs = testing.AllocsPerRun(1000, func() { g.Decide(ctx, in) })
	var k int64
	res.pluginAllocs = testing.AllocsPerRun(1000, func() {
		k++
		j := (k + pool/2) % pool
		p.CreateContainer(ctx, pods[j], ctrs[j])
	})
	res.slowAllocs = testing.AllocsPerRun(1000, func() {
		k++
		j := (k + pool/2) % pool
		slow.CreateContainer(ctx, pods[j], ctrs[j])
	})
	return res
}
