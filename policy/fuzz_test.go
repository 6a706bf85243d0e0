package policy

import (
	"errors"
	"strings"
	"testing"

	"github.com/nri-image-verifier/nri-image-verifier/imageref"
)

func FuzzParse(f *testing.F) {
	f.Add([]byte(withKeys(f, fullPolicy)))
	f.Add([]byte(withKeys(f, cosignHead+"policy: [{pattern: '*', with: {trustRoot: '*', threshold: 2, required: [bob]}}]")))
	f.Add([]byte("validators: [{name: default, type: notaryv1, host: notary.io}]\npolicy: [{pattern: '*'}]"))
	f.Add([]byte("validators: [{name: default, type: cosign, host: {rekor: x}, trustRoots: [{name: default, key: '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----'}]}]"))
	f.Add([]byte("{}"))
	f.Add([]byte("- 1"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			return
		}
		// A valid policy answers every image without panicking.
		for _, img := range []string{"redis", "reg.io/a/b:c@" + testDigest, testDigest} {
			for _, ns := range []string{"", "default"} {
				if m, err := p.Match(img, ns); err == nil && (m.Rule == nil || m.Validator == nil) {
					t.Fatalf("Match(%q) returned a match without rule or validator", img)
				}
			}
		}
	})
}

func FuzzMatch(f *testing.F) {
	f.Add("*:*", "redis:7", "")
	f.Add("docker.io/library/redis", "docker.io/library/redis-evil:7", "prod")
	f.Add("reg.io/app@"+testDigest, "reg.io/app:v1@"+testDigest, "x")
	f.Add("*/*/?*", "localhost:5000/a/b", "")
	f.Add("a*b*c*d*e*f*g", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "")
	f.Add("*", "[::1]:5000/app", "prod")
	f.Add("{redis,nginx}:[0-9]*", "redis:7", "")
	f.Add("{eu,us}.reg.io/[!x]*/{a,b*,}", "eu.reg.io/y/b:1", "prod")
	f.Fuzz(func(t *testing.T, pattern, image, namespace string) {
		approve := false
		p := &Policy{
			Validators: []Validator{{Name: "default", Type: TypeStatic, Approve: &approve}},
			Rules:      []Rule{{Pattern: pattern}, {Pattern: "*", Namespaces: []string{"prod"}}},
		}
		validErr := p.Validate()
		m, err := p.Match(image, namespace)
		if err != nil {
			if validErr == nil && !errors.Is(err, ErrNoRule) {
				// A valid policy fails only on the image.
				if _, nerr := imageref.Normalize(image); nerr == nil {
					t.Fatalf("Match(%q) with %q: %v", image, pattern, err)
				}
			}
			return
		}
		if validErr != nil {
			t.Fatalf("Match succeeded on an invalid policy (%v)", validErr)
		}
		// A pattern that is the normalised image itself always matches it
		// (patterns can not spell IPv6 hosts, nor be over-long).
		norm := m.Image
		if strings.Contains(norm, "[") || len(norm) > maxPatternLen {
			return
		}
		exact := &Policy{Validators: p.Validators, Rules: []Rule{{Pattern: norm}}}
		if got, err := exact.Match(image, ""); err != nil || got.Index != 0 {
			t.Fatalf("pattern %q does not match its own image %q: %v", norm, image, err)
		}
	})
}
