package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// peer is cosign's library in a process of its own (the nested module
// ./cosignpeer), driven one verification at a time so that its calls
// interleave with ours on the same images.
type peer struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *json.Decoder
}

type peerResult struct {
	OK       bool   `json:"ok"`
	Err      string `json:"err"`
	NS       int64  `json:"ns"`
	Requests int    `json:"requests"`
	Depth    int    `json:"depth"`
}

// buildPeer builds ./cosignpeer (cosign v3 from the Go module proxy, kept
// out of the main go.mod; cold: about a minute).
func buildPeer(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "cosignpeer")
	start := time.Now()
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, ".")
	cmd.Dir = "cosignpeer"
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building cosignpeer: %v\n%s", err, out)
	}
	t.Logf("cosignpeer built in %v", time.Since(start).Round(time.Millisecond))
	return bin
}

func startPeer(t testing.TB, bin, keyPEM string, args ...string) *peer {
	t.Helper()
	key := filepath.Join(t.TempDir(), "cosign.pub")
	if err := os.WriteFile(key, []byte(keyPEM), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"-key", key}, args...)...)
	cmd.Stderr = os.Stderr
	// cosign reads these; make sure nothing points it at the internet.
	cmd.Env = append(os.Environ(), "TUF_ROOT="+t.TempDir(), "SIGSTORE_NO_CACHE=true")
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
	return &peer{cmd: cmd, in: in, out: json.NewDecoder(bufio.NewReader(out))}
}

func (p *peer) verify(ref, format string) (peerResult, error) {
	var r peerResult
	if err := json.NewEncoder(p.in).Encode(map[string]string{"ref": ref, "format": format}); err != nil {
		return r, err
	}
	if err := p.out.Decode(&r); err != nil {
		return r, err
	}
	if !r.OK {
		return r, fmt.Errorf("cosign: %s", r.Err)
	}
	return r, nil
}
