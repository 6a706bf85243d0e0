package main

import (
	"fmt"
	"runtime"
	"testing"
)

// asTest runs f as the testing package runs a test, so that this program
// can call internal/imagetest (whose helpers take a testing.TB) unchanged:
// f gets its own goroutine, and a Fatalf records the failure and ends that
// goroutine. It returns the failure, if any.
func asTest(f func(t testing.TB)) error {
	t := &fatalTB{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(t)
	}()
	<-done
	return t.err
}

// fatalTB implements the testing.TB methods imagetest's signing helpers
// call. The embedded nil interface makes any other method panic: a new
// need shows at once rather than being silently ignored.
type fatalTB struct {
	testing.TB
	err error
}

func (t *fatalTB) Helper() {}

func (t *fatalTB) Fatalf(format string, args ...any) {
	t.err = fmt.Errorf(format, args...)
	runtime.Goexit()
}
