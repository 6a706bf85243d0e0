package faults

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nri-image-verifier/nri-image-verifier/internal/daemontest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/faulttest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/nritest"
	"github.com/nri-image-verifier/nri-image-verifier/plugin"
)

// daemon is `nri-image-verifier run` as a process.
type daemon struct {
	*daemontest.Daemon
	metrics string // http://host:port/metrics
}

func (d *daemon) logText() string { return d.Log() }

// goroutines scrapes go_goroutines from the daemon's /metrics.
func (d *daemon) goroutines(t *testing.T) int {
	t.Helper()
	resp, err := http.Get(d.metrics)
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			n, _ := strconv.ParseFloat(v, 64)
			return int(n)
		}
	}
	t.Fatal("no go_goroutines in /metrics")
	return 0
}

// TestBinaryUnderFaults runs the real daemon against NRI's runtime side
// with the registry behind the fault proxy, and the environment's
// HTTP_PROXY pointing at a trap: any request for a host off loopback goes
// to the trap (Go bypasses the proxy for loopback only), so a redirect off
// the machine is seen and refused without a DNS lookup. It checks the
// runtime's answers, their timing, and the daemon's goroutines, file
// descriptors and peak memory.
func TestBinaryUnderFaults(t *testing.T) {
	bin := daemontest.Binary(t)
	upstream := imagetest.StartRegistry(t)
	alice := imagetest.NewSigner(t, imagetest.ECDSAP256)
	signed := imagetest.PushImageConfig(t, upstream+"/app/signed:v1")
	imagetest.SignLegacy(t, upstream+"/app/signed", signed.Digest, alice, imagetest.SignOptions{})

	proxy, err := faulttest.Start(upstream)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	trap, err := faulttest.StartTrap()
	if err != nil {
		t.Fatal(err)
	}
	defer trap.Close()

	dir := t.TempDir()
	policyFile := filepath.Join(dir, "policy.yaml")
	writeFile(t, policyFile, fmt.Sprintf(`
validators:
- name: default
  type: cosign
  trustRoots:
  - name: default
    key: |
      %s
policy:
- pattern: "%s/*"
`, strings.ReplaceAll(strings.TrimSpace(alice.PublicKeyPEM()), "\n", "\n      "), proxy.Addr()))
	dockerConfig := filepath.Join(dir, "config.json")
	writeFile(t, dockerConfig, "{}")

	rt, err := nritest.New(nritest.Options{Required: []string{plugin.DefaultName}, Severable: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	if err := rt.Start(); err != nil {
		t.Fatal(err)
	}

	const decision = 800 * time.Millisecond
	dd, err := daemontest.Start(daemontest.Options{Binary: bin, Args: []string{"run",
		"--policy", policyFile,
		"--nri-socket", rt.Socket,
		"--audit-log", filepath.Join(dir, "audit.jsonl"),
		"--docker-config", dockerConfig,
		"--containerd-socket", "",
		"--events=false",
		"--http-addr", "127.0.0.1:0",
		"--decision-timeout", decision.String(),
		"--registry-timeout", "300ms",
		"--verify-timeout", "4s",
		"--cache-error-ttl", "300ms",
		"--cache-deny-ttl", "300ms",
	},
		Env:   []string{"HTTP_PROXY=" + trap.URL(), "HTTPS_PROXY=" + trap.URL(), "NO_PROXY=", "no_proxy=", "http_proxy=", "https_proxy="},
		Grace: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{Daemon: dd}
	defer func() {
		d.Stop()
		if t.Failed() {
			t.Logf("daemon log:\n%s", d.logText())
		}
	}()
	if err := rt.WaitPlugin(20 * time.Second); err != nil {
		t.Fatalf("%v; daemon log:\n%s", err, d.logText())
	}
	addr, err := d.HTTPAddr(time.Second)
	if err != nil {
		t.Fatalf("no metrics address: %v", err)
	}
	d.metrics = "http://" + addr + "/metrics"

	img := nritest.Image{Name: proxy.Addr() + "/app/signed:v1", Digest: signed.Digest, ConfigDigest: signed.ConfigDigest}
	// create retries a pending deny until the verdict is in, and checks
	// that every hook answered within the decision timeout.
	create := func() error {
		t.Helper()
		for i := 0; i < 30; i++ {
			rt.ResetHooks()
			_, err := rt.Create("faults", img)
			if _, _, slowest := rt.Hooks(); slowest > decision+hookSlack {
				t.Errorf("a hook took %v, over the %v decision timeout", slowest, decision)
			}
			if err == nil || !strings.Contains(err.Error(), "verification still running") {
				return err
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatal("still pending after 30 attempts")
		return nil
	}
	if err := create(); err != nil {
		t.Fatalf("signed image refused: %v", err)
	}
	// The signed image's allow is cached for an hour; each case reloads
	// the policy (a new version keys a fresh cache), so that the image is
	// verified anew through the fault. It waits for the daemon's reload.
	reload := func(n int) {
		t.Helper()
		b, err := os.ReadFile(policyFile)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, policyFile, string(b)+fmt.Sprintf("# reload %d\n", n))
		deadline := time.Now().Add(10 * time.Second)
		for strings.Count(d.logText(), `"msg":"policy reloaded"`) < n {
			if time.Now().After(deadline) {
				t.Fatalf("policy reload %d not seen:\n%s", n, d.logText())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	settleDaemon := func() faulttest.Usage {
		proxy.CloseIdleConnections()
		time.Sleep(100 * time.Millisecond)
		u := faulttest.MeasurePID(d.PID())
		u.Goroutines = d.goroutines(t)
		return u
	}
	baseline := settleDaemon()
	t.Logf("daemon baseline: %s", baseline)

	cases := []struct {
		name   string
		rule   faulttest.Rule
		reason []string
	}{
		{"redirect off the machine", faulttest.Rule{Kinds: []faulttest.Kind{faulttest.KindBlob}, Fault: faulttest.Redirect("http://blobs.mirror.example")},
			[]string{"blobs.mirror.example", "plain HTTP refused"}},
		{"redirect off the machine over https", faulttest.Rule{Kinds: []faulttest.Kind{faulttest.KindBlob}, Fault: faulttest.Redirect("https://cdn.mirror.example")},
			[]string{"cdn.mirror.example"}},
		{"huge chunked manifest", faulttest.Rule{Kinds: []faulttest.Kind{faulttest.KindManifest}, Fault: faulttest.Huge(1<<30, false, ociManifest)},
			[]string{"exceeds the manifest size cap"}},
		{"slow headers", faulttest.Rule{Kinds: []faulttest.Kind{faulttest.KindSigTag}, Fault: faulttest.SlowHeaders(time.Minute)},
			[]string{"no response within the 300ms request timeout"}},
		{"redirect loop", faulttest.Rule{Kinds: []faulttest.Kind{faulttest.KindSigTag}, Fault: faulttest.Redirect("http://" + proxy.Addr())},
			[]string{"stopped after 10 redirects"}},
		{"503", faulttest.Rule{Kinds: []faulttest.Kind{faulttest.KindSigTag}, Fault: faulttest.Status(http.StatusServiceUnavailable, "")},
			[]string{"HTTP 503 Service Unavailable"}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reload(i + 1)
			proxy.ResetCounters()
			proxy.Set(tc.rule)
			err := create()
			proxy.Clear()
			if err == nil {
				t.Fatal("allowed while the registry misbehaved")
			}
			t.Logf("refusal: %v", err)
			for _, s := range tc.reason {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("refusal does not name %q", s)
				}
			}
			if proxy.Faulted() == 0 {
				t.Error("the fault was never hit")
			}
		})
	}
	// The HTTPS redirect went to the network (the trap proxy stands in for
	// it, and refused); the plain-HTTP one was refused in the client and
	// never left.
	hosts := trap.Hosts()
	if len(hosts) == 0 {
		t.Error("the trap saw nothing, want the HTTPS redirect's target")
	}
	for _, h := range hosts {
		if !strings.HasPrefix(h, "cdn.mirror.example") {
			t.Errorf("the trap saw %q: a plain-HTTP request left the machine", h)
		}
	}

	// Recovered: the same image is allowed once the registry behaves.
	reload(len(cases) + 1)
	if err := create(); err != nil {
		t.Fatalf("after the faults: %v", err)
	}

	// Let the background verifications end, then compare.
	var after faulttest.Usage
	deadline := time.Now().Add(15 * time.Second)
	for {
		after = settleDaemon()
		if after.Goroutines <= baseline.Goroutines+2 && after.FDs <= baseline.FDs+2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("daemon after: %s", after)
	if after.Goroutines > baseline.Goroutines+2 || after.FDs > baseline.FDs+2 {
		t.Errorf("daemon did not come back to baseline: %s, baseline %s", after, baseline)
	}
	if after.PeakRSS > 200<<20 {
		t.Errorf("daemon peak RSS %d MiB while registries sent gigabytes", after.PeakRSS>>20)
	}
	// The audit log has one line per decision, all JSON.
	f, err := os.Open(filepath.Join(dir, "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("audit line is not JSON: %v", err)
		}
		n++
	}
	t.Logf("%d audit lines", n)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
