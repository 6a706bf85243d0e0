package daemontest

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// DefaultGrace is how long Stop waits after SIGTERM before SIGKILL.
const DefaultGrace = 10 * time.Second

// Options say how to start a process.
type Options struct {
	// Binary is the program to run; empty: the daemon (Binary).
	Binary string
	// Args follow the program on its command line, e.g. "run",
	// "--policy", path, ...
	Args []string
	// Env is added to this process's environment for the child.
	Env []string
	// Unset drops the variables whose names start with one of these
	// prefixes from the child's environment (before Env is added), e.g.
	// "KUBERNETES_SERVICE_" so that the daemon never believes it runs in
	// a cluster.
	Unset []string
	// Grace is how long Stop waits for the process to exit after SIGTERM
	// before it kills it; zero: DefaultGrace.
	Grace time.Duration
	// SysProcAttr, if not nil, is the child's (e.g. Pdeathsig).
	SysProcAttr *syscall.SysProcAttr
}

// Daemon is a started process: the daemon or, through Options.Binary,
// another server a test runs. Its standard output and error go to one
// log, kept in memory for the test to read and wait on.
type Daemon struct {
	cmd   *exec.Cmd
	log   Log
	grace time.Duration
	done  chan struct{}
	stop  sync.Once
}

// Start starts the process; the caller stops it (Stop). A test whose
// daemon lives as long as the test uses Run.
func Start(o Options) (*Daemon, error) {
	if o.Binary == "" {
		bin, err := Build(DaemonPkg, Plain)
		if err != nil {
			return nil, err
		}
		o.Binary = bin
	}
	d := &Daemon{grace: o.Grace, done: make(chan struct{})}
	if d.grace == 0 {
		d.grace = DefaultGrace
	}
	d.cmd = exec.Command(o.Binary, o.Args...)
	d.cmd.Env = environ(o.Unset, o.Env)
	d.cmd.Stdout, d.cmd.Stderr = &d.log, &d.log
	d.cmd.SysProcAttr = o.SysProcAttr
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("daemontest: start %s: %w", o.Binary, err)
	}
	go func() {
		_ = d.cmd.Wait()
		close(d.done)
	}()
	return d, nil
}

// Run starts the process and stops it when t ends, showing its log if t
// failed. It fails t if the process cannot start.
func Run(t testing.TB, o Options) *Daemon {
	t.Helper()
	d, err := Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.Stop()
		if t.Failed() {
			t.Logf("%s's log:\n%s", d.name(), d.Log())
		}
	})
	return d
}

func environ(unset, add []string) []string {
	env := os.Environ()
	if len(unset) > 0 {
		kept := env[:0:0]
	next:
		for _, e := range env {
			for _, p := range unset {
				if strings.HasPrefix(e, p) {
					continue next
				}
			}
			kept = append(kept, e)
		}
		env = kept
	}
	return append(env, add...)
}

func (d *Daemon) name() string {
	return d.cmd.Args[0][strings.LastIndex(d.cmd.Args[0], "/")+1:]
}

// PID is the process's ID.
func (d *Daemon) PID() int { return d.cmd.Process.Pid }

// Done is closed once the process has exited and its output is read.
func (d *Daemon) Done() <-chan struct{} { return d.done }

// Exited says whether the process has exited.
func (d *Daemon) Exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// ProcessState is the exited process's state; nil while it runs.
func (d *Daemon) ProcessState() *os.ProcessState {
	if !d.Exited() {
		return nil
	}
	return d.cmd.ProcessState
}

// Signal sends sig to the process.
func (d *Daemon) Signal(sig syscall.Signal) error {
	if err := d.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal %s (pid %d): %w", d.name(), d.PID(), err)
	}
	return nil
}

// Stop ends the process as a DaemonSet rollout does: SIGCONT (a test may
// have stopped it), SIGTERM, then SIGKILL after the grace period. It
// returns once the process is reaped; calling it again, or on a process
// that has exited, is a no-op. A nil Daemon is stopped.
func (d *Daemon) Stop() {
	if d == nil {
		return
	}
	d.stop.Do(func() {
		if d.Exited() {
			return
		}
		_ = d.cmd.Process.Signal(syscall.SIGCONT)
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(d.grace):
			_ = d.cmd.Process.Kill()
			<-d.done
		}
	})
}

// Kill ends the process with SIGKILL and waits until it is reaped.
func (d *Daemon) Kill() {
	if d == nil {
		return
	}
	d.stop.Do(func() {
		_ = d.cmd.Process.Kill()
		<-d.done
	})
}

// Log is everything the process has written so far.
func (d *Daemon) Log() string { return d.log.String() }

// Tail is the last n lines of the log.
func (d *Daemon) Tail(n int) string { return d.log.Tail(n) }

// Count is how many times s occurs in the log.
func (d *Daemon) Count(s string) int { return strings.Count(d.Log(), s) }

// WaitLog waits until s occurs in the log more than after times (0: at
// all). It gives up when the process exits or after timeout, with an
// error that holds the end of the log.
func (d *Daemon) WaitLog(s string, after int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for d.Count(s) <= after {
		if d.Exited() {
			if d.Count(s) > after {
				return nil
			}
			return fmt.Errorf("%s exited (%v) before logging %q; its log:\n%s", d.name(), d.cmd.ProcessState, s, d.Tail(40))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not log %q within %v; its log:\n%s", d.name(), s, timeout, d.Tail(40))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// ConnectedLine is the daemon's log line once the NRI runtime has
// registered and synchronised it: from then on it is sent containers.
const ConnectedLine = `"connected to NRI runtime"`

// ServingLine is the daemon's log line naming the address it serves
// /metrics, /healthz and /readyz on (--http-addr).
const ServingLine = `"msg":"serving metrics and health"`

var servingAddr = regexp.MustCompile(`"msg":"serving metrics and health","addr":"([^"]+)"`)

// HTTPAddr is the host:port the daemon serves /metrics, /healthz and
// /readyz on, from its log: it waits up to timeout for the line. With
// --http-addr 127.0.0.1:0 the daemon picks a free port and says which.
func (d *Daemon) HTTPAddr(timeout time.Duration) (string, error) {
	if err := d.WaitLog(ServingLine, 0, timeout); err != nil {
		return "", err
	}
	m := servingAddr.FindStringSubmatch(d.Log())
	if m == nil {
		return "", fmt.Errorf("%s: no address in its %s line; its log:\n%s", d.name(), ServingLine, d.Tail(40))
	}
	return m[1], nil
}

// URL is http://<HTTPAddr><path>, e.g. d.URL(t, "/metrics"); it fails t
// if the daemon does not say where it serves within 20 seconds.
func (d *Daemon) URL(t testing.TB, path string) string {
	t.Helper()
	addr, err := d.HTTPAddr(20 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return "http://" + addr + path
}

// Get fetches path from the daemon's HTTP address and returns the status
// code and body; it fails t on a transport error.
func (d *Daemon) Get(t testing.TB, path string) (int, string) {
	t.Helper()
	url := d.URL(t, path)
	resp, err := http.Get(url) // #nosec G107 -- the test's own daemon on loopback
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// Log is a process's output, safe to write from the process's copying
// goroutines while tests read it.
type Log struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *Log) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String is everything written so far.
func (l *Log) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Tail is the last n lines written.
func (l *Log) Tail(n int) string {
	lines := strings.Split(strings.TrimRight(l.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
