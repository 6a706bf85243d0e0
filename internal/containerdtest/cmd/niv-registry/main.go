// Command niv-registry is the demo's image world: an OCI registry on
// 127.0.0.1 (go-containerregistry's pkg/registry, in memory, with the OCI
// 1.1 referrers API), a pause image and two app images pushed to it, and a
// cosign signature on one of them, made with a key generated on the spot
// that exists only in this process.
//
// When everything is pushed it writes DIR/world.env (shell variables naming
// the registry, the images and their digests) and DIR/cosign.pub, then
// serves until SIGINT or SIGTERM.
//
//	niv-registry -program niv-sleep -out DIR
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/nri-image-verifier/nri-image-verifier/internal/containerdtest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
)

func main() {
	program := flag.String("program", "", "static binary to put in the images (internal/containerdtest/cmd/niv-sleep)")
	out := flag.String("out", "", "directory for world.env and cosign.pub")
	flag.Parse()
	if *program == "" || *out == "" {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*program, *out); err != nil {
		fmt.Fprintln(os.Stderr, "niv-registry:", err)
		os.Exit(1)
	}
}

func run(programPath, out string) error {
	program, err := os.ReadFile(programPath)
	if err != nil {
		return fmt.Errorf("read program: %w", err)
	}
	// Port 0: the kernel picks a free port, so runs never clash.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: registry.New(
		registry.WithReferrersSupport(true),
		registry.Logger(log.New(io.Discard, "", 0)),
	)}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	host := ln.Addr().String()

	env, err := push(host, program, out)
	if err != nil {
		return err
	}
	if err := writeAtomic(filepath.Join(out, "world.env"), env); err != nil {
		return err
	}

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	select {
	case <-stop:
		return srv.Close()
	case err := <-served:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("serve: %w", err)
	}
}

// push makes the demo's images, signs one and returns world.env's text.
func push(host string, program []byte, out string) (string, error) {
	pause, err := containerdtest.PushRunnable(host+"/demo/pause:v1", program)
	if err != nil {
		return "", err
	}
	signed, err := containerdtest.PushRunnable(host+"/demo/signed:v1", program, "hello from the signed image")
	if err != nil {
		return "", err
	}
	unsigned, err := containerdtest.PushRunnable(host+"/demo/unsigned:v1", program, "hello from the unsigned image")
	if err != nil {
		return "", err
	}

	// A fresh key, and a signature in cosign's default (v2) format: the
	// `.sig` tag with a simple-signing payload naming the digest.
	var key *imagetest.Signer
	err = asTest(func(t testing.TB) {
		key = imagetest.NewSigner(t, imagetest.ECDSAP256)
		imagetest.SignLegacy(t, signed.Repo(), signed.Digest, key, imagetest.SignOptions{})
	})
	if err != nil {
		return "", fmt.Errorf("sign %s: %w", signed.Ref, err)
	}
	pub := filepath.Join(out, "cosign.pub")
	if err := writeAtomic(pub, key.PublicKeyPEM()); err != nil {
		return "", err
	}

	var b strings.Builder
	for _, kv := range [][2]string{
		{"REGISTRY", host},
		{"PAUSE_IMAGE", pause.Ref},
		{"SIGNED_IMAGE", signed.Ref},
		{"SIGNED_DIGEST", signed.Digest},
		{"UNSIGNED_IMAGE", unsigned.Ref},
		{"UNSIGNED_DIGEST", unsigned.Digest},
		{"PUBLIC_KEY", pub},
	} {
		fmt.Fprintf(&b, "%s=%s\n", kv[0], kv[1])
	}
	return b.String(), nil
}

// writeAtomic writes through a rename, so a reader waiting for the file
// never sees half of it.
func writeAtomic(path, content string) error {
	if err := os.WriteFile(path+".tmp", []byte(content), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
