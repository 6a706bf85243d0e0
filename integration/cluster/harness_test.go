package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/nri-image-verifier/nri-image-verifier/internal/containerdtest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/daemontest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/imagebuildtest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/kubetest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/kubetoolstest"
)

const (
	// A run's directory: under /tmp, as the e2e suite's, for the length
	// limits of unix socket paths. Its base name is also the cgroup under
	// which kubelet puts every pod.
	runDirParent = "/tmp"
	runDirPrefix = "niv-cluster-"

	ctrdVersion = "v2.4.2"
	nodeName    = "niv-node"
	// requestTimeout is containerd's plugin_request_timeout (its default);
	// the chart's decision timeout (1.5s) stays below it.
	requestTimeout = 2 * time.Second
	// tolerateKey is the chart's nri.tolerateMissingPluginsAnnotation,
	// which this containerd's default validator is configured with.
	tolerateKey = "tolerate-missing-nri-plugins.noderesource.dev"
	// wait bounds each wait for a daemon, a node or a pod: generous, as
	// the machine has two cores shared with other work.
	wait = 2 * time.Minute
)

// cluster is one single-node Kubernetes cluster on this machine: etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler and kubelet
// from the cached tools (internal/kubetoolstest), kubelet driving a real
// containerd whose NRI default validator requires nri-image-verifier, a
// loopback registry with the images, the plugin's among them, signed.
type cluster struct {
	dir      string // everything the run writes, sockets included
	root     string // the repository
	tools    kubetoolstest.Tools
	ctrdDir  string
	nodeIP   string
	registry string // host:port
	key      *imagetest.Signer
	program  []byte // niv-sleep, the app images' one file

	pause, signed, unsigned containerdtest.Image
	plugin                  containerdtest.Image // the plugin's image, signed

	api        *kubetest.Cluster
	client     *kubernetes.Clientset
	kubeconfig string // the admin's, for kubectl and helm
	httpPort   int    // the plugin's /metrics, /healthz, /readyz on the node
	pki        kubeletClientPKI

	cri                                   *containerdtest.CRI
	ctrd, controllers, scheduler, kubelet *containerdtest.Proc
}

// needRoot fails (or skips, if the user asked) when the cluster cannot run.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Getenv("NIV_SKIP_CONTAINERD") == "1" {
		t.Skip("NIV_SKIP_CONTAINERD=1: skipping the single-node cluster (real containerd and kubelet)")
	}
	if os.Geteuid() != 0 {
		t.Fatal("the single-node cluster needs root (containerd, runc, kubelet, mounts, cgroups). " +
			"Run it as root, or set NIV_SKIP_CONTAINERD=1 to skip it.")
	}
}

// newCluster builds (or finds cached) every binary, pushes and signs the
// images, and starts containerd, the control plane and kubelet, up to a
// Ready node whose namespaces have their ServiceAccount and root CA. All
// of it, and what kubelet changed on the host, is undone when t ends,
// also when it fails, and by the next run if this one is killed.
func newCluster(t *testing.T) *cluster {
	t.Helper()
	needRoot(t)
	start := time.Now()
	if err := containerdtest.BecomeSubreaper(); err != nil {
		t.Fatal(err)
	}
	root, err := kubetoolstest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	var buildLog strings.Builder
	tools, err := kubetoolstest.Ensure(context.Background(), root, &buildLog)
	if err != nil {
		t.Fatalf("the Kubernetes tools are needed and could not be built: %v\n%s", err, buildLog.String())
	}
	if buildLog.Len() > 0 {
		t.Log(strings.TrimSpace(buildLog.String()))
	}
	ctrdDir := containerdtest.Install(t, ctrdVersion)
	nodeIP, err := hostIPv4()
	if err != nil {
		t.Fatal(err)
	}

	lockHost(t)
	containerdtest.Sweep(t, filepath.Join(runDirParent, runDirPrefix+"*"), cleanRun)
	expectHostRestored(t) // as the sweep left it
	dir, err := os.MkdirTemp(runDirParent, runDirPrefix)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "owner"), strconv.Itoa(os.Getpid()))
	c := &cluster{dir: dir, root: root, tools: tools, ctrdDir: ctrdDir, nodeIP: nodeIP}
	t.Cleanup(func() { c.teardown(t) })
	if !*demo {
		// TestDemo ends on Ctrl-C by itself, through t.Cleanup.
		containerdtest.TearDownOnSignal(t, dir, cleanRun)
	}

	for _, step := range []struct {
		what string
		do   func(*testing.T)
	}{
		{"images built, pushed and signed", c.pushImages},
		{"containerd started", c.startContainerd},
		{"control plane started", c.startControlPlane},
		{"node Ready, static pod running", c.startKubelet},
	} {
		stepStart := time.Now()
		step.do(t)
		t.Logf("%s in %v", step.what, time.Since(stepStart).Round(time.Millisecond))
	}
	t.Logf("cluster ready in %v: Kubernetes %s, containerd %s, node %s (%s), registry %s, dir %s",
		time.Since(start).Round(time.Millisecond), tools.Version, ctrdVersion, nodeName, nodeIP, c.registry, dir)
	return c
}

// pushImages builds the app program and the plugin, pushes the pause
// image, two app images and the plugin's image to a loopback registry, and
// signs the plugin's image and one app image with a key made here.
func (c *cluster) pushImages(t *testing.T) {
	t.Helper()
	// Both builds at once: linking is most of a warm build's time.
	var pluginBin string
	pluginErr := make(chan error, 1)
	go func() {
		var err error
		pluginBin, err = daemontest.Build(daemontest.DaemonPkg, daemontest.Static)
		pluginErr <- err
	}()
	program, err := containerdtest.Program()
	if perr := <-pluginErr; perr != nil {
		t.Fatal(perr)
	}
	if err != nil {
		t.Fatal(err)
	}
	c.program = program

	srv := imagetest.StartRegistryServer(t, nil)
	c.registry = strings.TrimPrefix(srv.URL, "http://")
	c.pause = c.push(t, "/cluster/pause:v1", "")
	c.signed = c.push(t, "/cluster/signed:v1", "signed")
	c.unsigned = c.push(t, "/cluster/unsigned:v1", "unsigned")

	img, err := imagebuildtest.Plugin(pluginBin, runtime.GOARCH)
	if err != nil {
		t.Fatal(err)
	}
	c.plugin.Ref = c.registry + "/niv/nri-image-verifier:dev"
	if c.plugin.Digest, err = imagebuildtest.Push(c.plugin.Ref, img); err != nil {
		t.Fatal(err)
	}
	c.key = imagetest.NewSigner(t, imagetest.ECDSAP256)
	imagetest.SignLegacy(t, c.signed.Repo(), c.signed.Digest, c.key, imagetest.SignOptions{})
	imagetest.SignLegacy(t, c.plugin.Repo(), c.plugin.Digest, c.key, imagetest.SignOptions{})
}

// push pushes a runnable image at repoTag ("/path:tag"); its container
// prints say, then sleeps.
func (c *cluster) push(t *testing.T, repoTag, say string) containerdtest.Image {
	t.Helper()
	var args []string
	if say != "" {
		args = []string{say}
	}
	img, err := containerdtest.PushRunnable(c.registry+repoTag, c.program, args...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// startContainerd renders the e2e suite's containerd config with two
// changes a cluster needs: the default validator lets pods carrying the
// chart's tolerate annotation start while the plugin is missing (the
// plugin's own pod, static pods), and the NRI socket gets a folder of its
// own, the one the chart mounts into the plugin's pod. A dummy CNI config
// makes containerd report its network ready, so that the node turns
// Ready; every pod here uses the host's network and needs no CNI plugin.
func (c *cluster) startContainerd(t *testing.T) {
	t.Helper()
	for _, d := range []string{c.nriDir(), filepath.Join(c.dir, "cni", "net.d")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(c.dir, "cni", "net.d", "10-dummy.conflist"),
		`{"cniVersion":"1.0.0","name":"dummy","plugins":[{"type":"loopback"}]}`)
	var edits []string
	cfg, err := containerdtest.WriteConfig(c.dir, c.pause.Ref, c.registry, requestTimeout, func(cfg string) string {
		for _, e := range []struct{ old, new string }{
			{`socket_path = "` + c.dir + `/nri.sock"`, `socket_path = "` + c.nriSocket() + `"`},
			{`required_plugins = ["nri-image-verifier"]`, `required_plugins = ["nri-image-verifier"]` +
				"\n      tolerate_missing_plugins_annotation = \"" + tolerateKey + "\""},
		} {
			if strings.Count(cfg, e.old) == 1 {
				cfg = strings.Replace(cfg, e.old, e.new, 1)
				edits = append(edits, e.old)
			}
		}
		return cfg
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(edits) != 2 {
		t.Fatalf("hack/containerd-config.toml changed: the cluster's edits found only %q", edits)
	}
	if err := containerdtest.NoteMadeDirs(c.dir); err != nil {
		t.Fatal(err)
	}
	if c.cri, err = containerdtest.DialCRI(c.socket()); err != nil {
		t.Fatal(err)
	}
	if c.ctrd, err = containerdtest.StartContainerd(c.ctrdDir, cfg, c.socket(), c.logPath("containerd"), c.cri, wait); err != nil {
		t.Fatal(err)
	}
}

func (c *cluster) socket() string    { return filepath.Join(c.dir, "containerd.sock") }
func (c *cluster) nriDir() string    { return filepath.Join(c.dir, "nri-socket") }
func (c *cluster) nriSocket() string { return filepath.Join(c.nriDir(), "nri.sock") }

func (c *cluster) logPath(name string) string { return filepath.Join(c.dir, name+".log") }

// start starts a daemon of the cluster, logging to the run's directory.
// Every daemon names a file under it in its arguments (pass the flag and
// the path as two arguments), which is how cleanRun finds it after a crash.
func (c *cluster) start(t *testing.T, name, bin string, args ...string) *containerdtest.Proc {
	t.Helper()
	p, err := containerdtest.StartProc(name, c.logPath(name), nil, append([]string{bin}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// teardown stops kubelet first (it would restart what is removed), then
// every pod through CRI, so that containerd cleans up after itself, then
// the control plane and containerd; cleanRun removes the rest and undoes
// kubelet's changes to the host. A failed test first shows the daemons'
// logs; every run keeps them, and the refused pod's description, in
// keepDir.
func (c *cluster) teardown(t *testing.T) {
	if t.Failed() {
		c.showLogs(t)
	}
	c.keepLogs(t)
	c.kubelet.Stop(10 * time.Second)
	if c.cri != nil {
		if c.ctrd != nil && !c.ctrd.Exited() {
			c.removePods(t)
		}
		c.cri.Close()
	}
	c.scheduler.Stop(5 * time.Second)
	c.controllers.Stop(5 * time.Second)
	if c.api != nil {
		c.api.Stop()
	}
	c.ctrd.Stop(10 * time.Second)
	if err := cleanRun(c.dir); err != nil {
		t.Error(err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// showLogs prints the end of each daemon's log and of the plugin pod's.
func (c *cluster) showLogs(t *testing.T) {
	for _, p := range []struct {
		name string
		proc *containerdtest.Proc
	}{{"kubelet", c.kubelet}, {"containerd", c.ctrd}, {"kube-controller-manager", c.controllers}, {"kube-scheduler", c.scheduler}} {
		if p.proc != nil {
			t.Logf("%s's log (last lines):\n%s", p.name, p.proc.Tail(25))
		}
	}
	if logs := c.pluginLogs(); logs != "" {
		t.Logf("nri-image-verifier's log (last lines):\n%s", tail(logs, 30))
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// keepDir is where the last run's logs and the refused pod's `kubectl
// describe` stay after the run's directory is gone.
func keepDir() (string, error) {
	cache, err := kubetoolstest.CacheRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(cache, "cluster"), nil
}

func (c *cluster) keepLogs(t *testing.T) {
	keep, err := keepDir()
	if err == nil {
		err = os.MkdirAll(keep, 0o755)
	}
	if err != nil {
		t.Logf("keeping the logs: %v", err)
		return
	}
	for _, name := range []string{"kubelet", "containerd", "kube-controller-manager", "kube-scheduler"} {
		if b, err := os.ReadFile(c.logPath(name)); err == nil {
			_ = os.WriteFile(filepath.Join(keep, name+".log"), b, 0o644)
		}
	}
	_ = os.WriteFile(filepath.Join(keep, "nri-image-verifier.log"), []byte(c.pluginLogs()), 0o644)
	t.Logf("logs of this run kept in %s", keep)
}

// pluginLogs is what the plugin's containers wrote, those of every pod
// of the DaemonSet still on the node, for failure output.
func (c *cluster) pluginLogs() string {
	return readLogs(filepath.Join(c.dir, "pod-logs", pluginNamespace+"_"+release+"-*", "*", "*.log"))
}

// readLogs concatenates the files matching pattern, each under a header.
func readLogs(pattern string) string {
	files, _ := filepath.Glob(pattern)
	var b strings.Builder
	for _, f := range files {
		data, _ := os.ReadFile(f)
		fmt.Fprintf(&b, "==> %s\n%s", f, data)
	}
	return b.String()
}

func TestMain(m *testing.M) {
	code := m.Run()
	daemontest.Cleanup() // the plugin's static build
	os.Exit(code)
}
