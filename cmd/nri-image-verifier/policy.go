package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/nri-image-verifier/nri-image-verifier/verify/validators"
)

func policyCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, "usage: nri-image-verifier policy check FILE | policy match --policy FILE [--namespace NS] IMAGE\n")
		return exitUsage
	}
	switch args[0] {
	case "check":
		return policyCheck(args[1:], stdout, stderr)
	case "match":
		return policyMatch(args[1:], stdout, stderr)
	default:
		fmt.Fprintf(stderr, "unknown policy command %q (want check or match)\n", args[0])
		return exitUsage
	}
}

func policyCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("policy check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: nri-image-verifier policy check FILE")
		return exitUsage
	}
	pol, err := policy.LoadWith(fs.Arg(0), validators.Check)
	if err != nil {
		fmt.Fprintf(stderr, "%s: invalid policy:\n%v\n", fs.Arg(0), err)
		return exitDeny
	}
	fmt.Fprintf(stdout, "%s: OK (%d validators, %d rules, version %.12s)\n",
		fs.Arg(0), len(pol.Validators), len(pol.Rules), pol.Version)
	for _, w := range pol.Warnings() {
		fmt.Fprintf(stdout, "warning: %s\n", w)
	}
	return exitOK
}

func policyMatch(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("policy match", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("policy", "", "policy file (required)")
	ns := fs.String("namespace", "", "pod namespace (rules with a namespaces list apply only to those)")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 || *file == "" {
		fmt.Fprintln(stderr, "usage: nri-image-verifier policy match --policy FILE [--namespace NS] IMAGE")
		return exitUsage
	}
	pol, err := policy.LoadWith(*file, validators.Check)
	if err != nil {
		fmt.Fprintf(stderr, "%s: invalid policy:\n%v\n", *file, err)
		return exitDeny
	}
	m, err := pol.Match(fs.Arg(0), *ns)
	if errors.Is(err, policy.ErrNoRule) {
		fmt.Fprintf(stdout, "image:     %s\nno rule matches: the image is denied\n", fs.Arg(0))
		return exitDeny
	}
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return exitDeny
	}
	fmt.Fprintf(stdout, "image:     %s\nrule:      policy[%d] %q\nvalidator: %s (%s)\nmode:      %s\n",
		m.Image, m.Index, m.Rule.Pattern, m.Validator.Name, m.Validator.Type, m.Mode)
	for _, why := range m.Why {
		fmt.Fprintf(stdout, "  %s\n", why)
	}
	return exitOK
}
