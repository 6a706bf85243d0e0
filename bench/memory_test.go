package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/payload"

	"github.com/nri-image-verifier/nri-image-verifier/gate"
	"github.com/nri-image-verifier/nri-image-verifier/internal/daemontest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
	"github.com/nri-image-verifier/nri-image-verifier/plugin"
	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/nri-image-verifier/nri-image-verifier/verify"
)

type binaryInfo struct {
	path             string
	size, strippedSz int64
}

// buildDaemon builds the daemon as `make build` does, and once more
// stripped (-ldflags "-s -w", as an image build might).
func buildDaemon(t testing.TB) binaryInfo {
	t.Helper()
	build := func(f daemontest.Flavour) (string, int64) {
		bin, err := daemontest.Build(daemontest.DaemonPkg, f)
		if err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(bin)
		if err != nil {
			t.Fatal(err)
		}
		return bin, st.Size()
	}
	var b binaryInfo
	b.path, b.size = build(daemontest.Plain)
	if *reportMode {
		_, b.strippedSz = build(daemontest.Stripped)
	}
	return b
}

type memoryResult struct {
	verdicts         int
	allowed, denied  int
	wrong            int
	fill, drive      time.Duration
	rssIdle, rss     int64 // bytes
	hwm              int64
	anonIdle, anon   int64 // RssAnon: heap, stacks, runtime
	fileIdle, file   int64 // RssFile: the binary's pages mapped
	heapInuse, heapA float64
	entries          float64
	bin              binaryInfo
	perVerdict       float64 // heap bytes per cached verdict, in process
}

// rawRegistry pushes manifests and blobs straight through the registry
// API: 10,000 images through go-containerregistry's remote package would
// take minutes.
type rawRegistry struct {
	host string
	c    *http.Client
}

func (r rawRegistry) put(t testing.TB, repo, ref, mediaType string, body []byte) {
	req, _ := http.NewRequest(http.MethodPut, "http://"+r.host+"/v2/"+repo+"/manifests/"+ref, bytes.NewReader(body))
	req.Header.Set("Content-Type", mediaType)
	r.do(t, req, http.StatusCreated)
}

func (r rawRegistry) blob(t testing.TB, repo string, body []byte) string {
	d := fmt.Sprintf("sha256:%x", sha256.Sum256(body))
	req, _ := http.NewRequest(http.MethodPost, "http://"+r.host+"/v2/"+repo+"/blobs/uploads/?digest="+d, bytes.NewReader(body))
	r.do(t, req, http.StatusCreated)
	return d
}

func (r rawRegistry) do(t testing.TB, req *http.Request, want int) {
	resp, err := r.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: %s", req.Method, req.URL.Path, resp.Status)
	}
}

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int               `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type manifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        descriptor   `json:"config"`
	Layers        []descriptor `json:"layers"`
}

const ociManifest = "application/vnd.oci.image.manifest.v1+json"

func sum(b []byte) string { return fmt.Sprintf("sha256:%x", sha256.Sum256(b)) }

// fillRegistry pushes n distinct images to 100 repositories (the
// registry's referrers listing reads a whole repository), every other one
// signed as cosign v2 does (a simple-signing payload in the .sig image).
func fillRegistry(t *testing.T, host string, n int, key *ecdsa.PrivateKey) []image {
	sv, err := signature.LoadECDSASignerVerifier(key, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	r := rawRegistry{host: host, c: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}}
	imgs := make([]image, n)
	var wg sync.WaitGroup
	work := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				path := fmt.Sprintf("mem/app%02d", i%100)
				cfg := []byte(fmt.Sprintf(`{"architecture":"amd64","os":"linux","config":{"Env":["N=%d"]},"rootfs":{"type":"layers","diff_ids":[]}}`, i))
				layer := sum([]byte(fmt.Sprint("layer", i)))
				m, _ := json.Marshal(manifest{SchemaVersion: 2, MediaType: ociManifest,
					Config: descriptor{MediaType: "application/vnd.oci.image.config.v1+json", Digest: sum(cfg), Size: len(cfg)},
					Layers: []descriptor{{MediaType: "application/vnd.oci.image.layer.v1.tar+gzip", Digest: layer, Size: 1000}}})
				d := sum(m)
				r.put(t, path, d, ociManifest, m)
				img := image{kind: "unsigned", repo: host + "/" + path, digest: d, config: sum(cfg)}
				if i%2 == 0 {
					ref, _ := name.NewDigest(img.repo + "@" + d)
					body, _ := payload.Cosign{Image: ref}.MarshalJSON()
					sig, err := sv.SignMessage(bytes.NewReader(body))
					if err != nil {
						t.Error(err)
						return
					}
					pd := r.blob(t, path, body)
					emptyCfg := []byte("{}")
					sm, _ := json.Marshal(manifest{SchemaVersion: 2, MediaType: ociManifest,
						Config: descriptor{MediaType: "application/vnd.oci.image.config.v1+json", Digest: sum(emptyCfg), Size: 2},
						Layers: []descriptor{{MediaType: imagetest.SimpleSigningMediaType, Digest: pd, Size: len(body),
							Annotations: map[string]string{imagetest.SignatureAnnotation: base64.StdEncoding.EncodeToString(sig)}}}})
					r.put(t, path, strings.Replace(d, ":", "-", 1)+".sig", ociManifest, sm)
					img.kind, img.signed = "legacy", true
				}
				imgs[i] = img
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	return imgs
}

// benchMemory runs the daemon binary against an NRI runtime and creates
// one container of each of n distinct images, so that it caches n
// verdicts (n/2 allows, n/2 denials), then reads its resident set.
func benchMemory(t *testing.T, n int) memoryResult {
	res := memoryResult{verdicts: n, bin: buildDaemon(t), perVerdict: cacheFootprint(t, n)}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	host := imagetest.StartRegistry(t)
	t0 := time.Now()
	imgs := fillRegistry(t, host, n, key)
	res.fill = time.Since(t0)

	dir := t.TempDir()
	pem, _ := cryptoutils.MarshalPublicKeyToPEM(key.Public())
	pol := fmt.Sprintf("validators:\n- name: default\n  type: cosign\n  trustRoots:\n  - name: default\n    key: |\n      %s\npolicy:\n- pattern: %q\n",
		strings.ReplaceAll(strings.TrimSpace(string(pem)), "\n", "\n      "), host+"/*")
	policyPath := filepath.Join(dir, "policy.yaml")
	dockerConfig := filepath.Join(dir, "config.json")
	for p, c := range map[string]string{policyPath: pol, dockerConfig: "{}"} {
		if err := os.WriteFile(p, []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpAddr := ln.Addr().String()
	ln.Close()

	rt := startNRI(t, plugin.DefaultName)
	var env []string
	if e := os.Getenv("NIV_BENCH_DAEMON_ENV"); e != "" {
		env = strings.Fields(e)
	}
	d := daemontest.Run(t, daemontest.Options{Binary: res.bin.path, Env: env, Args: []string{"run",
		"--policy", policyPath, "--nri-socket", rt.socket,
		"--audit-log", filepath.Join(dir, "audit.jsonl"), "--docker-config", dockerConfig,
		"--containerd-socket", "", "--events=false", "--http-addr", httpAddr,
		"--node-name", "bench", "--log-level", "warn"}})
	rt.waitPlugin(t)
	time.Sleep(200 * time.Millisecond)
	res.rssIdle, _, res.anonIdle, res.fileIdle = procStatus(d.PID())

	t0 = time.Now()
	ctx := context.Background()
	for i, img := range imgs {
		// Distinct names too (a tag per image), as a node's images have.
		_, err := rt.createNamed(ctx, img, fmt.Sprintf("%s:t%d", img.repo, i), "default")
		switch {
		case (err == nil) != img.signed:
			res.wrong++
			if res.wrong < 5 {
				t.Errorf("%s: %v", img.ref(), err)
			}
		case err == nil:
			res.allowed++
		default:
			res.denied++
		}
	}
	res.drive = time.Since(t0)
	time.Sleep(500 * time.Millisecond)
	res.rss, res.hwm, res.anon, res.file = procStatus(d.PID())
	m := scrape(t, "http://"+httpAddr+"/metrics")
	res.heapInuse, res.heapA, res.entries = m["go_memstats_heap_inuse_bytes"], m["go_memstats_heap_alloc_bytes"], m["nri_image_verifier_cache_entries"]
	if int(res.entries) != n {
		t.Errorf("the daemon caches %v verdicts, want %d", res.entries, n)
	}
	return res
}

// procStatus returns VmRSS, VmHWM, RssAnon and RssFile of pid in bytes.
func procStatus(pid int) (rss, hwm, anon, file int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, 0, 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = v << 10
		case "VmHWM:":
			hwm = v << 10
		case "RssAnon:":
			anon = v << 10
		case "RssFile:":
			file = v << 10
		}
	}
	return rss, hwm, anon, file
}

// scrape reads the unlabelled samples of a Prometheus text exposition.
func scrape(t testing.TB, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "#") {
			continue
		}
		k, v, ok := strings.Cut(l, " ")
		if !ok || strings.Contains(k, "{") {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err == nil {
			out[k] = f
		}
	}
	return out
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// cacheFootprint is the heap one cached verdict costs in process: n
// decisions of distinct images (names and digests, half allowed with
// cosign's allow reason, half denied with its no-signature reason), through
// gate.Decide, measured after a GC. It counts the verdict cache and the
// gate's rule-match cache; not the plugin's per-container memo (bounded,
// 4096 containers for a minute).
func cacheFootprint(t *testing.T, n int) (perVerdict float64) {
	pol := policyFor(t, "127.0.0.1:5000", imagetest.NewSigner(t, imagetest.ECDSAP256))
	g, err := gate.New(pol, func(*policy.Validator) (verify.Verifier, error) {
		return verify.VerifierFunc(func(_ context.Context, s verify.Subject, _ policy.With) (verify.Verdict, error) {
			if s.Digest[len(s.Digest)-1]%2 == 0 {
				return verify.Verdict{Allowed: true, Signers: []string{"default"},
					Reason: fmt.Sprintf("signed by trust roots %v (threshold %d)", []string{"default"}, 1)}, nil
			}
			tag := strings.Replace(s.Digest, ":", "-", 1) + ".sig"
			return verify.Verdict{Reason: fmt.Sprintf("no cosign signature found for %s (looked for tag %s and OCI referrers)", s.Digest, tag)}, nil
		}), nil
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	inputs := make([]gate.Input, n)
	for i := range inputs {
		inputs[i] = gate.Input{Image: fmt.Sprintf("127.0.0.1:5000/app%02d:t%d", i%100, i),
			Digest: fmt.Sprintf("sha256:%064x", i), ConfigDigest: fmt.Sprintf("sha256:%064x", i+1<<40), Namespace: "default"}
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, in := range inputs {
		g.Decide(context.Background(), in)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if g.Cache().Len() != n {
		t.Errorf("%d verdicts cached, want %d", g.Cache().Len(), n)
	}
	runtime.KeepAlive(inputs)
	return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n)
}
