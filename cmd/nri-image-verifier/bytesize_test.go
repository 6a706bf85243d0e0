package main

import "testing"

func TestByteSize(t *testing.T) {
	for in, want := range map[string]int64{"262144": 262144, "256Ki": 256 << 10, "64Mi": 64 << 20, "1Gi": 1 << 30, "1536Ki": 1536 << 10} {
		var b byteSize
		if err := b.Set(in); err != nil || int64(b) != want {
			t.Errorf("Set(%q) = %d, %v; want %d", in, int64(b), err, want)
		}
	}
	for in, want := range map[int64]string{256 << 10: "256Ki", 64 << 20: "64Mi", 1536 << 10: "1536Ki", 1000: "1000", 1 << 30: "1Gi"} {
		if b := byteSize(in); b.String() != want {
			t.Errorf("String(%d) = %q, want %q", in, b.String(), want)
		}
	}
	for _, bad := range []string{"", "0", "-1", "1KB", "Mi", "1.5Mi", "9999999999Gi", "1 Mi"} {
		var b byteSize
		if err := b.Set(bad); err == nil {
			t.Errorf("Set(%q) = %d, want an error", bad, int64(b))
		}
	}
}
