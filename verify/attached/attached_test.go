package attached

import (
	"errors"
	"strings"
	"testing"

	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/nri-image-verifier/nri-image-verifier/verify"
	"github.com/nri-image-verifier/nri-image-verifier/verify/registry"
)

func TestNew(t *testing.T) {
	reg, err := registry.New(registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	build := func(v *policy.Validator) (map[string]int, error) { return map[string]int{"default": 1}, nil }
	v := &policy.Validator{Name: "v", TrustRoots: []policy.TrustRoot{{Name: "default"}}}
	for _, tc := range []struct {
		v    *policy.Validator
		reg  *registry.Client
		want string
	}{
		{nil, reg, "x validator: none given"},
		{v, nil, `x validator "v": no registry client`},
		{&policy.Validator{Name: "v"}, reg, `x validator "v": no trust roots`},
	} {
		if _, err := New("x", tc.v, tc.reg, build); err == nil || err.Error() != tc.want {
			t.Errorf("New: %v, want %q", err, tc.want)
		}
	}
	_, err = New("x", v, reg, func(*policy.Validator) (map[string]int, error) { return nil, errors.New("bad key") })
	if err == nil || err.Error() != `x validator "v": bad key` {
		t.Errorf("New with a failing build: %v", err)
	}
	a, err := New("x", v, reg, build)
	if err != nil || a.Roots["default"] != 1 || a.Policy != v || a.Reg != reg {
		t.Fatalf("New = %+v, %v", a, err)
	}
}

func TestSelect(t *testing.T) {
	v := &policy.Validator{Name: "v", TrustRoots: []policy.TrustRoot{{Name: "default"}, {Name: "b"}}}
	a := Validator[string]{Kind: "x", Policy: v, Roots: map[string]string{"default": "D", "b": "B"}}
	sel, reason := a.Select(policy.With{TrustRoot: "*", Required: []string{"b"}})
	if reason != "" || strings.Join(sel.Roots, ",") != "D,B" || strings.Join(sel.Names, ",") != "default,b" || sel.Threshold != 1 || len(sel.Required) != 1 {
		t.Errorf("Select(*) = %+v, %q", sel, reason)
	}
	if _, reason := a.Select(policy.With{TrustRoot: "gone"}); reason != `trust root "gone" is not defined in x validator "v"` {
		t.Errorf("Select(gone) reason %q", reason)
	}
}

func TestRepository(t *testing.T) {
	digest := "sha256:" + strings.Repeat("ab", 32)
	if repo, reason := Repository(verify.Subject{Repository: "reg.io/app", Digest: digest}); reason != "" || repo.String() != "reg.io/app" {
		t.Errorf("Repository = %v, %q", repo, reason)
	}
	if _, reason := Repository(verify.Subject{Repository: "Not A Repo", Digest: digest}); !strings.HasPrefix(reason, `repository "Not A Repo" is not valid: `) {
		t.Errorf("bad repository: %q", reason)
	}
	if _, reason := Repository(verify.Subject{Repository: "reg.io/app", Digest: "sha256:00"}); !strings.HasPrefix(reason, `image digest "sha256:00" is not valid: `) {
		t.Errorf("bad digest: %q", reason)
	}
}

func TestFailed(t *testing.T) {
	a := Validator[int]{Kind: "x", Policy: &policy.Validator{Name: "v"}}
	verdict, err := a.Failed(&registry.DefinitiveError{Reason: "the chain does not lead to the config"})
	if err != nil || verdict.Allowed || verdict.Reason != "the chain does not lead to the config" {
		t.Errorf("definitive: %+v, %v", verdict, err)
	}
	cause := errors.New("connection refused")
	verdict, err = a.Failed(cause)
	if !errors.Is(err, cause) || err.Error() != `x validator "v": connection refused` || verdict.Allowed || verdict.Reason != "" {
		t.Errorf("transient: %+v, %v", verdict, err)
	}
}
