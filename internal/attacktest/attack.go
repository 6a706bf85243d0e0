// Package attacktest stages what a tenant who can create pods and run a
// registry does to the node's gate, against the real daemon behind NRI's
// runtime side (which serialises every call, as containerd does): the
// attacker's registry (a fault proxy in front of a real registry) serves
// hostile answers, one loop per attacker image retries its create, and a
// victim tenant creates containers of a statically allowed image and of a
// signed image whose verdict is cached. integration/faults asserts the
// defences with it; bench measures them.
package attacktest

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nri-image-verifier/nri-image-verifier/internal/daemontest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/faulttest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/nritest"
	"github.com/nri-image-verifier/nri-image-verifier/plugin"
)

// Namespaces of the two tenants.
const (
	AttackerNS = "attacker"
	VictimNS   = "victim"
)

// Options stage one attack.
type Options struct {
	// Binary is the daemon; empty: daemontest.Binary.
	Binary string
	// Attackers is the number of attacker images, each retried in its own
	// loop; zero: 8.
	Attackers int
	// Rules are what the attacker's registry does; nil: a tarpit (every
	// request waits ten minutes for its answer).
	Rules []faulttest.Rule
	// Args are added to the daemon's command line (after the defaults, so
	// they win).
	Args []string
	// Env is added to the daemon's environment (e.g. GOMEMLIMIT).
	Env []string
}

// World is a staged attack: the daemon, the runtime, both tenants' images.
type World struct {
	t      testing.TB
	RT     *nritest.Runtime
	Daemon *daemontest.Daemon
	Proxy  *faulttest.Proxy
	// Static and Signed are the victim's images: allowed by a static rule,
	// and signed (verified by cosign from a good registry). Fresh is
	// signed too, for a test to create once, after an attack: its verdict
	// cannot come from the cache.
	Static, Signed, Fresh nritest.Image
	// Evil are the attacker's images, named on the attacker's registry.
	Evil []nritest.Image
}

// DecisionTimeout is the daemon's --decision-timeout here (its default).
const DecisionTimeout = plugin.DefaultTimeout

// Start stages the world; everything stops when t ends.
func Start(t testing.TB, o Options) *World {
	t.Helper()
	if o.Attackers == 0 {
		o.Attackers = 8
	}
	if o.Rules == nil {
		o.Rules = []faulttest.Rule{{Fault: faulttest.SlowHeaders(10 * time.Minute)}}
	}
	if o.Binary == "" {
		o.Binary = daemontest.Binary(t)
	}
	good := imagetest.StartRegistry(t)
	alice := imagetest.NewSigner(t, imagetest.ECDSAP256)
	w := &World{t: t}
	signed := imagetest.PushImageConfig(t, good+"/app/signed:v1")
	imagetest.SignLegacy(t, good+"/app/signed", signed.Digest, alice, imagetest.SignOptions{})
	w.Signed = nritest.Image{Name: good + "/app/signed:v1", Digest: signed.Digest, ConfigDigest: signed.ConfigDigest}
	fresh := imagetest.PushImageConfig(t, good+"/app/fresh:v1")
	imagetest.SignLegacy(t, good+"/app/fresh", fresh.Digest, alice, imagetest.SignOptions{})
	w.Fresh = nritest.Image{Name: good + "/app/fresh:v1", Digest: fresh.Digest, ConfigDigest: fresh.ConfigDigest}
	static := imagetest.PushImageConfig(t, good+"/static/app:v1")
	w.Static = nritest.Image{Name: good + "/static/app:v1", Digest: static.Digest, ConfigDigest: static.ConfigDigest}

	// The attacker's images are real (the runtime would have pulled them);
	// only their signatures are behind the hostile proxy.
	evil := imagetest.StartRegistry(t)
	proxy, err := faulttest.Start(evil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)
	proxy.Set(o.Rules...)
	w.Proxy = proxy
	for i := range o.Attackers {
		img := imagetest.PushImageConfig(t, fmt.Sprintf("%s/evil/app%d:v1", evil, i))
		w.Evil = append(w.Evil, nritest.Image{Name: fmt.Sprintf("%s/evil/app%d:v1", proxy.Addr(), i), Digest: img.Digest, ConfigDigest: img.ConfigDigest})
	}
	w.startDaemon(o, good, alice.PublicKeyPEM())
	return w
}

func (w *World) startDaemon(o Options, good, pubPEM string) {
	t := w.t
	dir := t.TempDir()
	pol := fmt.Sprintf(`validators:
- name: default
  type: cosign
  trustRoots:
  - name: default
    key: |
      %s
- name: allow
  type: static
  approve: true
policy:
- pattern: "%s/*"
- pattern: "%s/static/*"
  validator: allow
- pattern: "%s/*"
`, strings.ReplaceAll(strings.TrimSpace(pubPEM), "\n", "\n      "), good, good, w.Proxy.Addr())
	policyFile, dockerConfig := filepath.Join(dir, "policy.yaml"), filepath.Join(dir, "config.json")
	for p, c := range map[string]string{policyFile: pol, dockerConfig: "{}"} {
		if err := os.WriteFile(p, []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	rt, err := nritest.New(nritest.Options{Required: []string{plugin.DefaultName}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rt.Close)
	if err := rt.Start(); err != nil {
		t.Fatal(err)
	}
	w.RT = rt
	args := append([]string{"run", "--policy", policyFile, "--nri-socket", rt.Socket,
		"--audit-log", filepath.Join(dir, "audit.jsonl"), "--docker-config", dockerConfig,
		"--containerd-socket", "", "--events=false", "--http-addr", "127.0.0.1:0",
		// The tarpit must outlast the measurement: no request or
		// verification times out while the victim is measured.
		"--registry-timeout", "5m", "--verify-timeout", "5m",
	}, o.Args...)
	w.Daemon = daemontest.Run(t, daemontest.Options{Binary: o.Binary, Args: args, Env: o.Env})
	if err := rt.WaitPlugin(30 * time.Second); err != nil {
		t.Fatalf("%v; daemon log:\n%s", err, w.Daemon.Log())
	}
}

// Settle creates img in the victim's namespace until its verdict is in (a
// pending answer is retried) and returns the final answer.
func (w *World) Settle(img nritest.Image) error {
	for range 100 {
		_, err := w.RT.Create(VictimNS, img)
		if err == nil || !strings.Contains(err.Error(), "verification still running") {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s still pending after 100 attempts", img.Name)
}

// AttackResult counts the attacker's creates while the attack ran.
type AttackResult struct {
	Creates, Allowed int64
	// Reasons are the distinct refusals the attacker got (first 200
	// bytes each).
	Reasons []string
}

// Attack starts one create loop per attacker image, each retrying every
// 50 ms (kubelet retries far more slowly), until stop is called (again and again: it
// returns the same result).
func (w *World) Attack() (stop func() AttackResult) {
	var (
		res  AttackResult
		mu   sync.Mutex
		seen = map[string]bool{}
		quit = make(chan struct{})
		wg   sync.WaitGroup
		n, a atomic.Int64
		once sync.Once
	)
	for _, img := range w.Evil {
		wg.Go(func() {
			for {
				_, err := w.RT.Create(AttackerNS, img)
				n.Add(1)
				if err == nil {
					a.Add(1)
				} else {
					r := err.Error()[:min(200, len(err.Error()))]
					mu.Lock()
					if !seen[r] {
						seen[r] = true
						res.Reasons = append(res.Reasons, r)
					}
					mu.Unlock()
				}
				select {
				case <-quit:
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
		})
	}
	return func() AttackResult {
		once.Do(func() {
			close(quit)
			wg.Wait()
			res.Creates, res.Allowed = n.Load(), a.Load()
		})
		return res
	}
}

// Victim creates img n times in the victim's namespace, 100 ms apart, and
// returns each create's latency as the runtime saw it, failing on a
// refusal.
func (w *World) Victim(img nritest.Image, n int) ([]time.Duration, error) {
	var ds []time.Duration
	for range n {
		d, err := w.RT.Create(VictimNS, img)
		if err != nil {
			return ds, fmt.Errorf("victim's %s refused: %w", img.Name, err)
		}
		ds = append(ds, d)
		time.Sleep(100 * time.Millisecond)
	}
	return ds, nil
}

// Metric reads one sample of the daemon's /metrics by its full name
// (labels included), or -1 when it is absent.
func (w *World) Metric(name string) float64 {
	_, body := w.Daemon.Get(w.t, "/metrics")
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err == nil {
				return f
			}
		}
	}
	return -1
}

// WaitFor polls cond every 50 ms until it holds or timeout passes.
func WaitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// Median and Max of latencies.
func Median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// Max is the longest of ds.
func Max(ds []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}
