package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// byteSize is a flag holding a size in bytes, written as a number with an
// optional binary suffix as in Kubernetes quantities: 262144, 256Ki,
// 64Mi, 1Gi.
type byteSize int64

var byteSuffixes = []struct {
	suffix string
	shift  uint
}{{"Ki", 10}, {"Mi", 20}, {"Gi", 30}}

func (b *byteSize) Set(s string) error {
	num, shift := s, uint(0)
	for _, sf := range byteSuffixes {
		if rest, ok := strings.CutSuffix(s, sf.suffix); ok {
			num, shift = rest, sf.shift
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 {
		return fmt.Errorf("%q is not a positive size (bytes, or a number with Ki, Mi or Gi)", s)
	}
	if n > math.MaxInt64>>shift {
		return fmt.Errorf("%q is too large", s)
	}
	*b = byteSize(n << shift)
	return nil
}

func (b *byteSize) String() string {
	n := int64(*b)
	for i := len(byteSuffixes) - 1; i >= 0; i-- {
		if sf := byteSuffixes[i]; n != 0 && n%(1<<sf.shift) == 0 {
			return strconv.FormatInt(n>>sf.shift, 10) + sf.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}
