package gate

import (
	"context"
	"testing"

	"github.com/nri-image-verifier/nri-image-verifier/verify"
)

// BenchmarkDecideWarm is the common case on a node: the verdict for this
// digest and rule is cached, so a decision is a rule match and a cache hit.
func BenchmarkDecideWarm(b *testing.B) {
	f := &fakes{verdict: verify.Verdict{Allowed: true}}
	pol := newGate(b, testPolicy, f)
	in := Input{Image: "127.0.0.1:5000/fake/app:v1", Digest: dgst, Namespace: "default"}
	if d := pol.Decide(context.Background(), in); !d.Allowed && d.Reason == "" {
		b.Fatalf("setup: %+v", d)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if d := pol.Decide(context.Background(), in); !d.CacheHit {
			b.Fatal("not a cache hit")
		}
	}
}
