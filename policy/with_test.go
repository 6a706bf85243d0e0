package policy

import (
	"encoding/json"
	"slices"
	"testing"

	"sigs.k8s.io/yaml"
)

func TestWithNeed(t *testing.T) {
	v := &Validator{Name: "default", Type: TypeCosign, TrustRoots: []TrustRoot{{Name: "default"}, {Name: "alice"}, {Name: "bob"}}}
	two := 2
	tests := []struct {
		name      string
		with      With
		selected  []string
		threshold int
		required  []string
	}{
		{"nothing: the default root", With{}, []string{"default"}, 1, nil},
		{"one named root", With{TrustRoot: "alice"}, []string{"alice"}, 1, nil},
		{"all roots: every one must sign", With{TrustRoot: "*"}, []string{"default", "alice", "bob"}, 3, nil},
		{"all roots, threshold", With{TrustRoot: "*", Threshold: &two}, []string{"default", "alice", "bob"}, 2, nil},
		{"all roots, required only", With{TrustRoot: "*", Required: []string{"bob"}}, []string{"default", "alice", "bob"}, 1, []string{"bob"}},
		{"all roots, threshold and required", With{TrustRoot: "*", Threshold: &two, Required: []string{"bob"}}, []string{"default", "alice", "bob"}, 2, []string{"bob"}},
	}
	for _, tt := range tests {
		if got := tt.with.Selected(v); !slices.Equal(got, tt.selected) {
			t.Errorf("%s: Selected = %q, want %q", tt.name, got, tt.selected)
		}
		th, req := tt.with.Need(v)
		if th != tt.threshold || !slices.Equal(req, tt.required) {
			t.Errorf("%s: Need = %d, %q; want %d, %q", tt.name, th, req, tt.threshold, tt.required)
		}
	}

	// Never a threshold of zero, even with nothing selected.
	if th, _ := (With{TrustRoot: "*"}).Need(&Validator{}); th != 1 {
		t.Errorf("Need with no roots: threshold %d, want 1", th)
	}
	if th, _ := (With{TrustRoot: "*"}).Need(nil); th != 1 {
		t.Errorf("Need(nil): threshold %d, want 1", th)
	}
	// Required is a copy.
	w := With{Required: []string{"a"}}
	_, req := w.Need(v)
	req[0] = "changed"
	if w.Required[0] != "a" {
		t.Error("Need returned the policy's own slice")
	}
}

func TestHostShapes(t *testing.T) {
	var v Validator
	if err := yaml.UnmarshalStrict([]byte("host: notary.docker.io"), &v); err != nil || v.Host == nil || v.Host.Server != "notary.docker.io" {
		t.Errorf("string host: %+v, %v", v.Host, err)
	}
	v = Validator{}
	if err := yaml.UnmarshalStrict([]byte("host: {rekor: r.io, rekorPubkey: k}"), &v); err != nil || v.Host.Rekor != "r.io" || v.Host.RekorPubkey != "k" || v.Host.Server != "" {
		t.Errorf("object host: %+v, %v", v.Host, err)
	}
	v = Validator{}
	if err := yaml.UnmarshalStrict([]byte("host: {rekor: r.io, bogus: 1}"), &v); err == nil {
		t.Error("object host with an unknown field was accepted")
	}
	if err := yaml.UnmarshalStrict([]byte("host: 5"), &v); err == nil {
		t.Error("numeric host was accepted")
	}
	for _, h := range []Host{{Server: "notary.io"}, {Rekor: "r.io", CTLogPubkey: "k"}} {
		data, err := json.Marshal(h)
		if err != nil {
			t.Fatal(err)
		}
		var back Host
		if err := json.Unmarshal(data, &back); err != nil || back != h {
			t.Errorf("round trip of %+v via %s: %+v, %v", h, data, back, err)
		}
	}
}
