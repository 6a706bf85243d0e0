// Command nri-image-verifier is an NRI plugin for containerd that refuses a
// container before it is created when its image digest is not signed as the
// policy demands. See the README for the subcommands.
package main

import (
	"fmt"
	"io"
	"os"
)

const usage = `usage: nri-image-verifier <command> [flags]

commands:
  run                          run the NRI plugin (the node daemon)
  verify --policy FILE IMAGE   verify one image now; exit 0 allow, 1 deny
  policy check FILE            validate a policy file
  policy match --policy FILE [--namespace NS] IMAGE
                               show the rule that applies to IMAGE and why

Run "nri-image-verifier <command> -h" for a command's flags.
`

// Exit codes: 0 allowed or OK, 1 denied or invalid, 2 usage error.
const (
	exitOK    = 0
	exitDeny  = 1
	exitUsage = 2
)

func main() {
	os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
}

func dispatch(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "run":
		return runCmd(args[1:], stderr)
	case "verify":
		return verifyCmd(args[1:], stdout, stderr)
	case "policy":
		return policyCmd(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "unknown command %q\n\n%s", args[0], usage)
		return exitUsage
	}
}
