package notarytest

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nri-image-verifier/nri-image-verifier/internal/daemontest"
)

// startTimeout bounds how long a started server may take to answer.
const startTimeout = 20 * time.Second

// Server is a notary-server process on 127.0.0.1, plain HTTP (no TLS
// section in its configuration), memory storage, and the local trust
// service holding the timestamp and snapshot keys (ed25519, whatever
// key_algorithm says).
type Server struct {
	// URL is the server's base URL, "http://127.0.0.1:<port>".
	URL string

	proc *daemontest.Daemon
}

// Start builds notary-server if need be, starts it and stops it when the
// test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := Binary(t)
	dir := t.TempDir()
	var last string
	// A port picked free can be taken before the server binds it.
	for attempt := 0; attempt < 5; attempt++ {
		s, err := start(bin, dir)
		if err == nil {
			t.Cleanup(func() {
				s.Stop()
				if t.Failed() {
					t.Logf("notary-server log:\n%s", s.Log())
				}
			})
			return s
		}
		last = err.Error()
		if !strings.Contains(last, "address already in use") {
			break
		}
	}
	t.Fatalf("starting notary-server: %s", last)
	return nil
}

func start(bin, dir string) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	conf := filepath.Join(dir, fmt.Sprintf("server-%d.json", port))
	cfg := fmt.Sprintf(`{"server": {"http_addr": %q},
"trust_service": {"type": "local", "key_algorithm": "ecdsa"},
"storage": {"backend": "memory"},
"logging": {"level": "info"}}`, addr)
	if err := os.WriteFile(conf, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	proc, err := daemontest.Start(daemontest.Options{Binary: bin, Args: []string{"-config", conf}, SysProcAttr: sysProcAttr()})
	if err != nil {
		return nil, err
	}
	s := &Server{URL: "http://" + addr, proc: proc}
	if err := s.waitHealthy(); err != nil {
		s.Stop()
		return nil, fmt.Errorf("%v; its log:\n%s", err, s.Log())
	}
	return s, nil
}

func (s *Server) waitHealthy() error {
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-s.proc.Done():
			return fmt.Errorf("notary-server exited: %v", s.proc.ProcessState())
		default:
		}
		resp, err := c.Get(s.URL + "/_notary_server/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("notary-server not healthy within %s", startTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the server process (by its PID) and waits for it; safe to
// call more than once. Tests call it to take the server down.
func (s *Server) Stop() { s.proc.Kill() }

// PID is the server's process ID.
func (s *Server) PID() int { return s.proc.PID() }

// Log returns what the server has logged.
func (s *Server) Log() string { return s.proc.Log() }

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
