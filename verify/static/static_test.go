package static

import (
	"context"
	"testing"

	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/nri-image-verifier/nri-image-verifier/verify"
)

func TestStatic(t *testing.T) {
	yes, no := true, false
	for _, tc := range []struct {
		approve *bool
		allowed bool
		wantErr bool
	}{{&yes, true, false}, {&no, false, false}, {nil, false, true}} {
		v, err := New(&policy.Validator{Name: "s", Type: policy.TypeStatic, Approve: tc.approve})
		if (err != nil) != tc.wantErr {
			t.Fatalf("New(approve=%v) err = %v", tc.approve, err)
		}
		if err != nil {
			continue
		}
		got, err := v.Verify(context.Background(), verify.Subject{Digest: "sha256:00"}, policy.With{})
		if err != nil || got.Allowed != tc.allowed || got.Reason == "" {
			t.Fatalf("approve=%v: verdict %+v err %v", *tc.approve, got, err)
		}
	}
}
