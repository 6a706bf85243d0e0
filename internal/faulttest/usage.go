package faulttest

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Usage is what a leak shows in: goroutines, open file descriptors,
// memory.
type Usage struct {
	Goroutines int
	FDs        int
	HeapInuse  uint64 // bytes, after a GC
	RSS        uint64 // bytes, VmRSS of the process
	PeakRSS    uint64 // bytes, VmHWM: the most RSS the process ever had
}

func (u Usage) String() string {
	return fmt.Sprintf("goroutines=%d fds=%d heap_inuse=%.1fMiB rss=%.1fMiB peak_rss=%.1fMiB",
		u.Goroutines, u.FDs, float64(u.HeapInuse)/(1<<20), float64(u.RSS)/(1<<20), float64(u.PeakRSS)/(1<<20))
}

// Measure takes a snapshot of this process (Linux: fds and RSS from /proc;
// elsewhere they read 0).
func Measure() Usage {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return Usage{
		Goroutines: runtime.NumGoroutine(),
		FDs:        countFDs("/proc/self/fd"),
		HeapInuse:  ms.HeapInuse,
		RSS:        procStatus("/proc/self/status", "VmRSS:"),
		PeakRSS:    procStatus("/proc/self/status", "VmHWM:"),
	}
}

// MeasurePID takes a snapshot of another process: fds and RSS only.
func MeasurePID(pid int) Usage {
	return Usage{
		FDs:     countFDs(fmt.Sprintf("/proc/%d/fd", pid)),
		RSS:     procStatus(fmt.Sprintf("/proc/%d/status", pid), "VmRSS:"),
		PeakRSS: procStatus(fmt.Sprintf("/proc/%d/status", pid), "VmHWM:"),
	}
}

func countFDs(dir string) int {
	es, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	return len(es)
}

// procStatus reads a size field (kB) of /proc/<pid>/status, in bytes.
func procStatus(status, field string) uint64 {
	b, err := os.ReadFile(status)
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field); ok {
			f := strings.Fields(v)
			if len(f) >= 1 {
				kb, _ := strconv.ParseUint(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

// Settle waits until goroutines and fds are back to at most baseline plus
// slack, calling cleanup (close idle connections) before each look, and
// returns the last snapshot and an error naming what stayed up. Goroutines
// and connections wind down asynchronously, hence the polling.
func Settle(baseline Usage, slack int, timeout time.Duration, cleanup func()) (Usage, error) {
	deadline := time.Now().Add(timeout)
	for {
		if cleanup != nil {
			cleanup()
		}
		u := Measure()
		if u.Goroutines <= baseline.Goroutines+slack && u.FDs <= baseline.FDs+slack {
			return u, nil
		}
		if time.Now().After(deadline) {
			return u, fmt.Errorf("not back to baseline after %s: %s, baseline %s\n%s", timeout, u, baseline, stacks())
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func stacks() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}
