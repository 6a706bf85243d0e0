// Command niv-sleep is the only program in the demo's and the e2e tests'
// images: the pause image runs it as the sandbox's init, the app images as
// their container. It prints its arguments, then waits for SIGTERM or
// SIGINT, so a started container stays running until it is stopped.
//
// It is built static (CGO_ENABLED=0) so that an image needs no other file:
// no base image, nothing downloaded.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	if len(os.Args) > 1 {
		fmt.Println(strings.Join(os.Args[1:], " "))
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
}
