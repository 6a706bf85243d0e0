// Package kubetest runs a real Kubernetes control plane for tests: etcd and
// kube-apiserver, built by internal/kubetoolstest and started on loopback with
// token authentication and RBAC, and the Helm chart's objects applied as
// rendered into daemonset/manifests, so that a test can act with the
// identity the chart gives the plugin.
//
// It serves integration/kube (the plugin against the API server alone) and
// integration/containerd (the API server joined to a real containerd).
package kubetest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/nri-image-verifier/nri-image-verifier/internal/kubetoolstest"
)

// AdminToken authenticates the test itself, as a member of system:masters.
const AdminToken = "nri-image-verifier-test-admin"

// Cluster is a running etcd and kube-apiserver.
type Cluster struct {
	Host    string // https://127.0.0.1:PORT
	CAData  []byte // the API server's serving certificate
	Version string // the Kubernetes version the API server is built from
	// Client has full rights (AdminToken).
	Client *kubernetes.Clientset

	dir   string
	procs []*proc // started order; stopped in reverse
}

type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// StartWithChart is what a test of the plugin against Kubernetes needs:
// the tools built (or found cached), the API server started and ready, and
// the chart's objects applied. A tool that cannot be built, a server that
// does not start or a chart that does not apply is an error, never a
// reason to skip. Build output and one line of timing go to log.
func StartWithChart(ctx context.Context, log io.Writer) (*Cluster, error) {
	root, err := kubetoolstest.RepoRoot()
	if err != nil {
		return nil, err
	}
	tools, err := kubetoolstest.Ensure(ctx, root, log)
	if err != nil {
		return nil, fmt.Errorf("kube-apiserver and etcd are needed and could not be built: %w", err)
	}
	start := time.Now()
	c, err := Start(ctx, tools)
	if err != nil {
		return nil, fmt.Errorf("starting kube-apiserver %s: %w", tools.Version, err)
	}
	if err := c.ApplyChart(ctx, root); err != nil {
		c.Stop()
		return nil, fmt.Errorf("applying the chart's manifests: %w", err)
	}
	fmt.Fprintf(log, "kubetest: kube-apiserver %s ready on %s, chart applied, in %s\n", tools.Version, c.Host,
		time.Since(start).Round(10*time.Millisecond))
	return c, nil
}

// User is an identity the API server authenticates by bearer token.
type User struct {
	Token, Name string
	Groups      []string
}

// Options adds to what Start sets up, for a whole cluster
// (integration/cluster): the identities of kubelet, the controller-manager
// and the scheduler, and the Node authorizer kubelet's needs.
type Options struct {
	Users []User
	// NodeAuthorizer puts the Node authorizer before RBAC, as kubeadm
	// does: members of system:nodes get what their node's pods need.
	NodeAuthorizer bool
	// APIServerArgs are added to kube-apiserver's command line.
	APIServerArgs []string
	// Dir, if set, is where the cluster's folder is made (else the
	// system's temp dir): inside a run's folder, the run's clean-up after
	// a crash finds etcd's data too.
	Dir string
}

// Start starts etcd and kube-apiserver from the cached tools and waits
// until the API server is ready. Everything listens on 127.0.0.1. On error
// whatever was started is stopped again.
func Start(ctx context.Context, tools kubetoolstest.Tools) (*Cluster, error) {
	return StartWith(ctx, tools, Options{})
}

// StartWith is Start with opts.
func StartWith(ctx context.Context, tools kubetoolstest.Tools, opts Options) (_ *Cluster, err error) {
	dir, err := os.MkdirTemp(opts.Dir, "niv-kube-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir, Version: tools.Version}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	ports, err := FreePorts(3)
	if err != nil {
		return nil, err
	}
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	if err := c.start("etcd", tools.Etcd,
		"--name", "default",
		"--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "default="+peerURL,
		// A throwaway store: no fsync makes the API server's writes fast.
		"--unsafe-no-fsync",
		"--log-level", "warn",
	); err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, &http.Client{Timeout: time.Second}, etcdURL+"/health", c.procs[0]); err != nil {
		return nil, fmt.Errorf("etcd: %w", err)
	}

	// Service account tokens (TokenRequest) need a signing key.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	saKey := filepath.Join(dir, "sa.key")
	tokens := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(saKey, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, err
	}
	users := AdminToken + ",test-admin,test-admin-uid,system:masters\n"
	for _, u := range opts.Users {
		// token,user,uid,"group1,group2"
		users += fmt.Sprintf("%s,%s,%s-uid,%q\n", u.Token, u.Name, u.Name, strings.Join(u.Groups, ","))
	}
	if err := os.WriteFile(tokens, []byte(users), 0o600); err != nil {
		return nil, err
	}
	authz := "RBAC"
	if opts.NodeAuthorizer {
		authz = "Node,RBAC"
	}
	certDir := filepath.Join(dir, "certs")
	c.Host = fmt.Sprintf("https://127.0.0.1:%d", ports[2])
	if err := c.start("kube-apiserver", tools.APIServer, append([]string{
		"--etcd-servers", etcdURL,
		"--bind-address", "127.0.0.1",
		"--advertise-address", "127.0.0.1",
		// The kubernetes Service's endpoints would be 127.0.0.1, which the
		// reconciler refuses; nothing here uses that Service.
		"--endpoint-reconciler-type", "none",
		"--secure-port", fmt.Sprint(ports[2]),
		"--cert-dir", certDir,
		"--token-auth-file", tokens,
		"--authorization-mode", authz,
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", saKey,
		"--service-account-signing-key-file", saKey,
		"--service-cluster-ip-range", "10.0.0.0/24",
	}, opts.APIServerArgs...)...); err != nil {
		return nil, err
	}
	// The serving certificate is written at start; wait for it, then for
	// /readyz (which waits on RBAC's bootstrap roles, among others).
	deadline := time.Now().Add(60 * time.Second)
	for {
		if c.CAData, err = os.ReadFile(filepath.Join(certDir, "apiserver.crt")); err == nil {
			break
		}
		if err := c.procs[1].exited(); err != nil || time.Now().After(deadline) {
			return nil, fmt.Errorf("kube-apiserver wrote no serving certificate: %v\n%s", err, c.procs[1].tail())
		}
		time.Sleep(50 * time.Millisecond)
	}
	tr, err := rest.TransportFor(c.Admin())
	if err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, &http.Client{Transport: tr, Timeout: 2 * time.Second}, c.Host+"/readyz", c.procs[1]); err != nil {
		return nil, fmt.Errorf("kube-apiserver: %w", err)
	}
	if c.Client, err = kubernetes.NewForConfig(c.Admin()); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Cluster) start(name, bin string, args ...string) error {
	logPath := filepath.Join(c.dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	// Its own process group, so nothing it starts outlives the test.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { cmd.Wait(); f.Close(); close(p.done) }()
	c.procs = append(c.procs, p)
	return nil
}

// Stop ends the API server before etcd, each with SIGTERM and then SIGKILL,
// and removes their files.
func (c *Cluster) Stop() {
	for i := len(c.procs) - 1; i >= 0; i-- {
		p := c.procs[i]
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	}
	c.procs = nil
	if c.dir != "" {
		os.RemoveAll(c.dir)
	}
}

func (p *proc) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited: %v", p.name, p.cmd.ProcessState)
	default:
		return nil
	}
}

// tail is the end of the process's log, for failure messages.
func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// ServiceAccountKey is the file of the key that signs service account
// tokens (for kube-controller-manager's --service-account-private-key-file).
func (c *Cluster) ServiceAccountKey() string { return filepath.Join(c.dir, "sa.key") }

// CAFile is the file of the API server's self-signed serving certificate,
// the CA a client checks it with (kube-controller-manager's
// --root-ca-file, which it publishes to every namespace as
// kube-root-ca.crt for the pods' service account volumes).
func (c *Cluster) CAFile() string { return filepath.Join(c.dir, "certs", "apiserver.crt") }

// Admin is a client config with full rights.
func (c *Cluster) Admin() *rest.Config {
	return c.WithToken(AdminToken)
}

// WithToken is a client config authenticating with token.
func (c *Cluster) WithToken(token string) *rest.Config {
	return &rest.Config{
		Host:            c.Host,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.CAData},
		QPS:             100,
		Burst:           200,
	}
}

// Kubeconfig writes a kubeconfig for token at path (and the CA beside it),
// for the daemon's --kubeconfig. Only Host and CAData are used, so a
// Cluster value naming an address where nothing listens makes the
// kubeconfig of an unreachable API server.
func (c *Cluster) Kubeconfig(path, token string) error {
	ca := filepath.Join(filepath.Dir(path), "ca.crt")
	if err := os.WriteFile(ca, c.CAData, 0o600); err != nil {
		return err
	}
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: test
  user:
    token: %s
contexts:
- name: test
  context: {cluster: test, user: test}
current-context: test
`, c.Host, ca, token)
	return os.WriteFile(path, []byte(cfg), 0o600)
}

// waitHTTP polls url until it answers 200, p exits or 90 s pass.
func waitHTTP(ctx context.Context, client *http.Client, url string, p *proc) error {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	var last string
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
		} else {
			last = err.Error()
		}
		if err := p.exited(); err != nil {
			return fmt.Errorf("%v\n%s", err, p.tail())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready at %s: %s\n%s", url, last, p.tail())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// FreePorts finds n free loopback ports.
func FreePorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
