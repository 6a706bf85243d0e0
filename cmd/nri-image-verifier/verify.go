package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/nri-image-verifier/nri-image-verifier/gate"
)

// verifyCmd checks one image now, the way the daemon would for a container
// using it: a tag is resolved to its digest first, then the digest is
// verified. Exit 0 when the node would allow it, 1 when it would deny.
func verifyCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var vf verifierFlags
	vf.register(fs)
	ns := fs.String("namespace", "", "pod namespace to match rules for")
	configDigest := fs.String("config-digest", "", "also check that the signed manifest chain leads to this image config digest")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: nri-image-verifier verify --policy FILE [flags] IMAGE")
		return exitUsage
	}
	g, reg, err := vf.build()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitDeny
	}
	ref, err := name.ParseReference(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(stderr, "image %q: %v\n", fs.Arg(0), err)
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), vf.verifyTimeout)
	defer cancel()
	digest, err := reg.Resolve(ctx, ref)
	if err != nil {
		fmt.Fprintf(stderr, "cannot resolve %s to a digest: %v\n", ref, err)
		return exitDeny
	}
	d := g.Decide(ctx, gate.Input{Image: ref.Name(), Digest: digest.String(), ConfigDigest: *configDigest, Namespace: *ns})
	fmt.Fprintf(stdout, "verdict:   %s\nimage:     %s\ndigest:    %s\nrule:      %q\nvalidator: %s\nmode:      %s\nreason:    %s\n",
		d.Verdict, d.Image, digest, d.Rule, d.Validator, d.Mode, d.Reason)
	if !d.Allowed {
		return exitDeny
	}
	return exitOK
}
