package bench

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"time"
)

// durations is a sample of latencies.
type durations []time.Duration

// pct is the p-th percentile (nearest rank), 0 < p <= 100.
func (d durations) pct(p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func (d durations) median() time.Duration { return d.pct(50) }

func (d durations) max() time.Duration {
	if len(d) == 0 {
		return 0
	}
	return slices.Max(d)
}

// ints is a sample of counts.
type ints []int

func (n ints) median() int {
	if len(n) == 0 {
		return 0
	}
	s := slices.Clone(n)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}

func (n ints) max() int {
	if len(n) == 0 {
		return 0
	}
	return slices.Max(n)
}

// us formats a duration in microseconds, ms in milliseconds.
func us(d time.Duration) string { return fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond)) }
func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

func ratio(a, b time.Duration) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2fx", float64(a)/float64(b))
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT MET"
}

// table renders a markdown table.
func table(header []string, rows [][]string) string {
	var b strings.Builder
	b.WriteString("| " + strings.Join(header, " | ") + " |\n|")
	for range header {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, r := range rows {
		b.WriteString("| " + strings.Join(r, " | ") + " |\n")
	}
	return b.String()
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }
