package main

import (
	"log/slog"
	"math"
	"os"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// memoryLimitRatio is the share of the container's memory limit the Go
// runtime is told to stay under. The rest is for what the Go heap does
// not count (goroutine stacks, the binary, kernel buffers of open
// connections) and for the garbage collector's lag under a burst.
const memoryLimitRatio = 0.8

// setMemoryLimit gives the Go runtime a soft memory limit of 80% of the
// memory limit of the daemon's cgroup (v2 memory.max or v1
// memory.limit_in_bytes, found through /proc/self/cgroup and mountinfo).
// Without one, Go's collector lets the heap grow to twice what is live
// before it collects, so a burst of verifications can pass the
// container's limit and get the daemon OOM-killed, after which every
// container create on the node is refused until it restarts. An operator's
// GOMEMLIMIT wins (and AUTOMEMLIMIT=off turns this off, AUTOMEMLIMIT=0.7
// changes the ratio). It logs what it chose; a failure to read the cgroup
// only logs, the daemon runs as Go's defaults have it.
func setMemoryLimit(log *slog.Logger, provider memlimit.Provider) {
	limit, err := memlimit.Set(memlimit.WithRatio(memoryLimitRatio), memlimit.WithProvider(provider))
	switch {
	case err != nil:
		log.Warn("no soft memory limit: the cgroup memory limit could not be read; set GOMEMLIMIT", "error", err.Error())
	case os.Getenv("GOMEMLIMIT") != "":
		log.Info("soft memory limit from GOMEMLIMIT", "GOMEMLIMIT", os.Getenv("GOMEMLIMIT"), "bytes", limit)
	case os.Getenv("AUTOMEMLIMIT") == "off":
		log.Info("soft memory limit off (AUTOMEMLIMIT=off)")
	case limit == math.MaxInt64:
		log.Info("no soft memory limit: the cgroup has no memory limit")
	default:
		log.Info("soft memory limit set from the cgroup memory limit", "bytes", limit, "MiB", limit>>20, "ratio", memoryLimitRatio)
	}
}
