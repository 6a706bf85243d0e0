package bench

import (
	"bufio"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
)

// registryProcEnv makes the test binary serve a registry instead of
// running tests (see TestMain).
const registryProcEnv = "NIV_BENCH_REGISTRY_PROCESS"

// serveRegistryProcess is the registry process: go-containerregistry's
// in-memory registry with the referrers API, as imagetest.StartRegistry
// serves, on 127.0.0.1. It prints its address and serves until its stdin
// closes (the benchmark ended or died).
func serveRegistryProcess() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr().String())
	h := registry.New(registry.WithReferrersSupport(true), registry.Logger(log.New(io.Discard, "", 0)))
	go http.Serve(ln, h)
	io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}

// startRegistryProcess runs the registry in a process of its own, so that
// the verifiers measured here (ours in this process, cosign's in its own)
// share neither its heap nor its garbage collections, only the CPUs.
func startRegistryProcess(t testing.TB) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), registryProcEnv+"=1")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(); cmd.Wait() })
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("registry process: %v", err)
	}
	return strings.TrimSpace(addr)
}
