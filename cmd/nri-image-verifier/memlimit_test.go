package main

import (
	"bytes"
	"errors"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// memLimitRun calls setMemoryLimit with provider and returns the limit it
// left and its log; the process's limit is restored afterwards.
func memLimitRun(t *testing.T, provider memlimit.Provider) (int64, string) {
	t.Helper()
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	var buf bytes.Buffer
	setMemoryLimit(slog.New(slog.NewTextHandler(&buf, nil)), provider)
	return debug.SetMemoryLimit(-1), buf.String()
}

// unsetenv unsets names for the test (t.Setenv restores them after).
func unsetenv(t *testing.T, names ...string) {
	for _, n := range names {
		t.Setenv(n, "")
		if err := os.Unsetenv(n); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSetMemoryLimit(t *testing.T) {
	unsetenv(t, "GOMEMLIMIT", "AUTOMEMLIMIT")
	t.Run("cgroup limit", func(t *testing.T) {
		got, log := memLimitRun(t, memlimit.Limit(256<<20))
		if want := int64(256 << 20 * 8 / 10); got != want || !strings.Contains(log, "from the cgroup memory limit") {
			t.Fatalf("limit %d, want %d; log %s", got, want, log)
		}
		t.Log(log)
	})
	t.Run("no cgroup limit", func(t *testing.T) {
		got, log := memLimitRun(t, func() (uint64, error) { return 0, memlimit.ErrNoLimit })
		if got != math.MaxInt64 || !strings.Contains(log, "no memory limit") {
			t.Fatalf("limit %d; log %s", got, log)
		}
	})
	t.Run("unreadable", func(t *testing.T) {
		before := debug.SetMemoryLimit(-1)
		got, log := memLimitRun(t, func() (uint64, error) { return 0, errors.New("no cgroup fs") })
		if got != before || !strings.Contains(log, "level=WARN") || !strings.Contains(log, "no cgroup fs") {
			t.Fatalf("limit %d (was %d); log %s", got, before, log)
		}
	})
	t.Run("AUTOMEMLIMIT=off", func(t *testing.T) {
		t.Setenv("AUTOMEMLIMIT", "off")
		before := debug.SetMemoryLimit(-1)
		got, log := memLimitRun(t, memlimit.Limit(256<<20))
		if got != before || !strings.Contains(log, "AUTOMEMLIMIT=off") {
			t.Fatalf("limit %d (was %d); log %s", got, before, log)
		}
	})
	t.Run("GOMEMLIMIT wins", func(t *testing.T) {
		t.Setenv("GOMEMLIMIT", "100MiB")
		before := debug.SetMemoryLimit(-1)
		got, log := memLimitRun(t, memlimit.Limit(256<<20))
		if got != before || !strings.Contains(log, "from GOMEMLIMIT") {
			t.Fatalf("limit %d (was %d); log %s", got, before, log)
		}
	})
}

// This machine's own cgroup, for the log: the provider the daemon uses
// must not fail on a Linux host, whatever its cgroup version.
func TestMemoryLimitFromThisCgroup(t *testing.T) {
	unsetenv(t, "GOMEMLIMIT", "AUTOMEMLIMIT")
	got, log := memLimitRun(t, memlimit.FromCgroup)
	if strings.Contains(log, "level=WARN") {
		t.Logf("(no cgroup here?) %s", log)
		return
	}
	t.Logf("limit %d: %s", got, log)
}
