// Package kube tests what the plugin does with Kubernetes against a real
// kube-apiserver and etcd, built from the Go module proxy (tools/kube) and
// started on loopback with token authentication and RBAC: the chart's
// ServiceAccount and RBAC applied as rendered, Events written with that
// identity, what it may not do, and the admission policy that guards the
// tolerate annotation.
package kube

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

	"k8s.io/client-go/rest"

	"github.com/nri-image-verifier/nri-image-verifier/internal/kubetools"
)

// adminToken authenticates the test itself, as a member of system:masters.
const adminToken = "nri-image-verifier-test-admin"

// cluster is a running etcd and kube-apiserver.
type cluster struct {
	dir    string
	host   string // https://127.0.0.1:PORT
	caData []byte
	procs  []*proc // started order; stopped in reverse
}

type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// startCluster starts etcd and kube-apiserver from the cached tools and
// waits until the API server is ready. Everything listens on 127.0.0.1.
func startCluster(ctx context.Context, tools kubetools.Tools) (*cluster, error) {
	dir, err := os.MkdirTemp("", "niv-kube-")
	if err != nil {
		return nil, err
	}
	c := &cluster{dir: dir}
	ports, err := freePorts(3)
	if err != nil {
		return c, err
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
		return c, err
	}
	if err := waitHTTP(ctx, &http.Client{Timeout: time.Second}, etcdURL+"/health", c.procs[0]); err != nil {
		return c, fmt.Errorf("etcd: %w", err)
	}

	// Service account tokens (TokenRequest) need a signing key.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return c, err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return c, err
	}
	saKey := filepath.Join(dir, "sa.key")
	tokens := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(saKey, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return c, err
	}
	if err := os.WriteFile(tokens, []byte(adminToken+",test-admin,test-admin-uid,system:masters\n"), 0o600); err != nil {
		return c, err
	}
	certDir := filepath.Join(dir, "certs")
	c.host = fmt.Sprintf("https://127.0.0.1:%d", ports[2])
	if err := c.start("kube-apiserver", tools.APIServer,
		"--etcd-servers", etcdURL,
		"--bind-address", "127.0.0.1",
		"--advertise-address", "127.0.0.1",
		// The kubernetes Service's endpoints would be 127.0.0.1, which the
		// reconciler refuses; nothing here uses that Service.
		"--endpoint-reconciler-type", "none",
		"--secure-port", fmt.Sprint(ports[2]),
		"--cert-dir", certDir,
		"--token-auth-file", tokens,
		"--authorization-mode", "RBAC",
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", saKey,
		"--service-account-signing-key-file", saKey,
		"--service-cluster-ip-range", "10.0.0.0/24",
	); err != nil {
		return c, err
	}
	// The serving certificate is written at start; wait for it, then for
	// /readyz (which waits on RBAC's bootstrap roles, among others).
	deadline := time.Now().Add(60 * time.Second)
	for {
		if c.caData, err = os.ReadFile(filepath.Join(certDir, "apiserver.crt")); err == nil {
			break
		}
		if err := c.procs[1].exited(); err != nil || time.Now().After(deadline) {
			return c, fmt.Errorf("kube-apiserver wrote no serving certificate: %v\n%s", err, c.procs[1].tail())
		}
		time.Sleep(50 * time.Millisecond)
	}
	tr, err := rest.TransportFor(c.admin())
	if err != nil {
		return c, err
	}
	if err := waitHTTP(ctx, &http.Client{Transport: tr, Timeout: 2 * time.Second}, c.host+"/readyz", c.procs[1]); err != nil {
		return c, fmt.Errorf("kube-apiserver: %w", err)
	}
	return c, nil
}

func (c *cluster) start(name, bin string, args ...string) error {
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

// stop ends the API server before etcd, each with SIGTERM and then SIGKILL.
func (c *cluster) stop() {
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
	os.RemoveAll(c.dir)
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

// admin is a client config with full rights.
func (c *cluster) admin() *rest.Config {
	return c.withToken(adminToken)
}

// withToken is a client config authenticating with token.
func (c *cluster) withToken(token string) *rest.Config {
	return &rest.Config{
		Host:            c.host,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.caData},
		QPS:             100,
		Burst:           200,
	}
}

// kubeconfig writes a kubeconfig for token, for the daemon's --kubeconfig.
func (c *cluster) kubeconfig(path, token string) error {
	ca := filepath.Join(filepath.Dir(path), "ca.crt")
	if err := os.WriteFile(ca, c.caData, 0o600); err != nil {
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
`, c.host, ca, token)
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

// freePorts finds n free loopback ports.
func freePorts(n int) ([]int, error) {
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
