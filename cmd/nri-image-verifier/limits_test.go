package main

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
	"github.com/nri-image-verifier/nri-image-verifier/verify/registry"
)

func TestRegistryLimitFlags(t *testing.T) {
	parse := func(args ...string) registry.Options {
		t.Helper()
		var vf verifierFlags
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		vf.register(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		var o registry.Options
		vf.limits.apply(&o)
		return o
	}
	def := parse()
	if def.MaxManifestBytes != registry.DefaultMaxManifestBytes || def.MaxSignatureBytes != registry.DefaultMaxSignatureBytes ||
		def.MaxBlobBytes != registry.DefaultMaxBlobBytes || def.BodyBudget != registry.DefaultBodyBudget || def.MaxDescriptors != registry.DefaultMaxDescriptors {
		t.Fatalf("defaults: %+v", def)
	}
	o := parse("--registry-max-manifest-bytes=2Mi", "--registry-max-signature-bytes=64Ki", "--registry-max-blob-bytes=16Mi",
		"--registry-body-budget=1Gi", "--registry-max-descriptors=32")
	if o.MaxManifestBytes != 2<<20 || o.MaxSignatureBytes != 64<<10 || o.MaxBlobBytes != 16<<20 || o.BodyBudget != 1<<30 || o.MaxDescriptors != 32 {
		t.Fatalf("set: %+v", o)
	}
}

// The flags reach the registry client: a signature cap below the size of
// a real .sig manifest refuses it, and a budget below a cap is refused at
// start with a reason.
func TestRegistryLimitFlagsApply(t *testing.T) {
	host := imagetest.StartRegistry(t)
	signer := imagetest.NewSigner(t, imagetest.ECDSAP256)
	signed := imagetest.PushImage(t, host+"/app:signed")
	imagetest.SignLegacy(t, host+"/app", signed, signer, imagetest.SignOptions{})
	file := writeFile(t, testPolicy(host, signer))
	dockerConfig := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(dockerConfig, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"verify", "--policy", file, "--docker-config", dockerConfig}

	code, out, errOut := run(t, append(base, "--registry-max-signature-bytes=100", host+"/app@"+signed)...)
	if code != exitDeny || !strings.Contains(out, "signature manifest size cap of 100 bytes") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	code, out, errOut = run(t, append(base, "--registry-body-budget=1Mi", host+"/app@"+signed)...)
	if code != exitDeny || !strings.Contains(errOut, "smaller than the largest size cap") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if code, _, errOut := run(t, append(base, "--registry-body-budget=lots", host+"/app@"+signed)...); code != exitUsage || !strings.Contains(errOut, "not a positive size") {
		t.Fatalf("bad size: exit %d, %s", code, errOut)
	}
}
