package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
)

func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := dispatch(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func testPolicy(host string, s *imagetest.Signer) string {
	key := "      " + strings.ReplaceAll(strings.TrimSpace(s.PublicKeyPEM()), "\n", "\n      ")
	return fmt.Sprintf(`validators:
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
- pattern: "%s/public/*"
  validator: allow
`, key, host, host)
}

func TestVerifyCommand(t *testing.T) {
	host := imagetest.StartRegistry(t)
	signer := imagetest.NewSigner(t, imagetest.ECDSAP256)
	signed := imagetest.PushImage(t, host+"/app:signed")
	imagetest.SignLegacy(t, host+"/app", signed, signer, imagetest.SignOptions{})
	unsigned := imagetest.PushImage(t, host+"/app:unsigned")
	file := writeFile(t, testPolicy(host, signer))
	// Never read the host's docker credentials in a test.
	dockerConfig := filepath.Join(t.TempDir(), "config.json")
	os.WriteFile(dockerConfig, []byte("{}"), 0o600)

	for _, tc := range []struct {
		image    string
		code     int
		contains []string
	}{
		{host + "/app:signed", exitOK, []string{"verdict:   allow", signed, "signed by"}},
		{host + "/app@" + signed, exitOK, []string{"verdict:   allow", signed}},
		{host + "/app:unsigned", exitDeny, []string{"verdict:   deny", unsigned, "no cosign signature"}},
		{host + "/app:missing", exitDeny, nil},
		{"ghcr.io/other/app@" + signed, exitDeny, nil}, // no rule; not resolved over the network
	} {
		t.Run(tc.image, func(t *testing.T) {
			if strings.HasPrefix(tc.image, "ghcr.io") {
				// Resolving a digest reference needs no network, and no rule
				// matches it.
				code, out, _ := run(t, "verify", "--policy", file, "--docker-config", dockerConfig, tc.image)
				if code != exitDeny || !strings.Contains(out, "no policy rule matches") {
					t.Fatalf("code %d, out:\n%s", code, out)
				}
				return
			}
			code, out, errOut := run(t, "verify", "--policy", file, "--docker-config", dockerConfig, tc.image)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, out, errOut)
			}
			for _, s := range tc.contains {
				if !strings.Contains(out, s) {
					t.Errorf("output lacks %q:\n%s", s, out)
				}
			}
		})
	}
}

func TestPolicyCommands(t *testing.T) {
	signer := imagetest.NewSigner(t, imagetest.Ed25519)
	good := writeFile(t, testPolicy("reg.example.com", signer))
	bad := writeFile(t, "validators:\n- name: default\n  type: cosign\npolicy:\n- pattern: \"*\"\n  validator: nope\n")

	if code, out, _ := run(t, "policy", "check", good); code != exitOK || !strings.Contains(out, "OK (2 validators, 2 rules") {
		t.Errorf("check good: %d %s", code, out)
	}
	code, _, errOut := run(t, "policy", "check", bad)
	if code != exitDeny || !strings.Contains(errOut, "trustRoots") || !strings.Contains(errOut, `"nope"`) {
		t.Errorf("check bad: %d\n%s", code, errOut)
	}

	code, out, _ := run(t, "policy", "match", "--policy", good, "reg.example.com/public/x:1")
	if code != exitOK || !strings.Contains(out, `"reg.example.com/public/*"`) || !strings.Contains(out, "validator: allow") ||
		!strings.Contains(out, `beats "reg.example.com/*"`) {
		t.Errorf("match:\n%s", out)
	}
	code, out, _ = run(t, "policy", "match", "--policy", good, "quay.io/x:1")
	if code != exitDeny || !strings.Contains(out, "no rule matches") {
		t.Errorf("match none: %d\n%s", code, out)
	}
	if code, _, _ := run(t, "policy", "match", "--policy", good); code != exitUsage {
		t.Errorf("match without image: exit %d", code)
	}
	if code, _, _ := run(t, "nonsense"); code != exitUsage {
		t.Errorf("unknown command: exit %d", code)
	}
}
