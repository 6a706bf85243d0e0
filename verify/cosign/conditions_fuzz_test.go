package cosign

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nri-image-verifier/nri-image-verifier/policy"
)

// Any condition on any JSON predicate compiles or is refused, and a
// compiled one evaluates to an answer or a *conditionError: no panic, and
// the cost limit stops runaway expressions well within the deadline.
func FuzzCondition(f *testing.F) {
	f.Add(`predicate.runDetails.builder.id == "x"`, []byte(`{"runDetails": {"builder": {"id": "x"}}}`))
	f.Add(`predicate.packages.exists(p, p.name.matches("^open.*"))`, []byte(`{"packages": [{"name": "openssl"}, {"name": 1}]}`))
	f.Add(`predicate.all(a, predicate.all(b, predicate.all(c, a == b && b == c)))`, []byte(`[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20]`))
	f.Add(`predicate.x.map(y, [y, y, y, y]).map(z, z + z + z).size() > 0`, []byte(`{"x": [[1,2,3],[4,5,6]]}`))
	f.Add(`size(predicate) == 3 && predicate[1] / 0.0 > 1.0`, []byte(`[1, 2.5e308, null]`))
	f.Add(`predicate.a.b.c.d == null`, []byte(`null`))
	f.Add(`int(predicate.n) == 9223372036854775807`, []byte(`{"n": 1e300}`))
	f.Add(`subject.exists(s, s.digest.sha256 == "ab") || predicateType.startsWith("https://")`, []byte(`"just a string"`))
	f.Fuzz(func(t *testing.T, expr string, predicate []byte) {
		c, err := compiledAttestation(policy.Attestation{PredicateType: "custom", Conditions: []string{expr}})
		if err != nil {
			return
		}
		var pred any
		if json.Unmarshal(predicate, &pred) != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		start := time.Now()
		err = c.check(ctx, statement{
			PredicateType: "https://cosign.sigstore.dev/attestation/v1",
			Predicate:     pred,
			Subject:       []statementSubject{{Name: "reg.io/app", Digest: map[string]string{"sha256": "ab"}}},
		})
		var ce *conditionError
		if err != nil && (!errors.As(err, &ce) || ce.Expr != expr) {
			t.Fatalf("Check(%q): %v, want nil or a conditionError for it", expr, err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("Check(%q) ran %v: the cost limit did not hold", expr, d)
		}
	})
}
