package cosign

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/nri-image-verifier/nri-image-verifier/verify"
	"github.com/nri-image-verifier/nri-image-verifier/verify/registry"
)

const (
	builderID = "https://github.com/org/app/.github/workflows/release.yml@refs/tags/v1.0.0"
	// slsaPredicate is a SLSA provenance v1 predicate as GitHub's builder
	// writes it (trimmed).
	slsaPredicate = `{
		"buildDefinition": {
			"buildType": "https://actions.github.io/buildtypes/workflow/v1",
			"externalParameters": {"workflow": {"ref": "refs/tags/v1.0.0", "repository": "https://github.com/org/app", "path": ".github/workflows/release.yml"}}
		},
		"runDetails": {"builder": {"id": "` + builderID + `"}, "metadata": {"invocationId": "https://github.com/org/app/actions/runs/42/attempts/1"}}
	}`
	spdxPredicate      = `{"spdxVersion": "SPDX-2.3", "name": "app", "packages": [{"name": "openssl", "versionInfo": "3.0.13"}, {"name": "zlib", "versionInfo": "1.3.1"}]}`
	cyclonedxPredicate = `{"bomFormat": "CycloneDX", "specVersion": "1.5", "components": [{"type": "library", "name": "zlib", "version": "1.3.1"}]}`
	customType         = "https://example.com/attestations/scan/v2"
	customPredicate    = `{"scanner": "trivy", "critical": 0, "high": 2}`
)

// Conditions the tests use.
var (
	builderPinned = "predicate.runDetails.builder.id == '" + builderID + "'"
	builderRegex  = `predicate.runDetails.builder.id.matches('^https://github\\.com/org/app/\\.github/workflows/release\\.yml@refs/tags/v[0-9]+\\.[0-9]+\\.[0-9]+$')`
)

// attestWorld is a registry, a ci key (the rule's root) and a dev key
// (another root of the same validator, not selected by the rule).
type attestWorld struct {
	repo    string
	ci, dev *imagetest.Signer
	v       *Verifier
}

func newAttestWorld(t *testing.T, host string, opts registry.Options) *attestWorld {
	t.Helper()
	w := &attestWorld{
		repo: host + "/app",
		ci:   imagetest.NewSigner(t, imagetest.ECDSAP256),
		dev:  imagetest.NewSigner(t, imagetest.Ed25519),
	}
	w.v = newVerifier(t, newClient(t, opts), root{"ci", w.ci}, root{"dev", w.dev})
	return w
}

// rule selects the ci root and requires the given attestations.
func rule(as ...policy.Attestation) policy.With {
	return policy.With{TrustRoot: "ci", Attestations: as}
}

func slsaRule(conds ...string) policy.With {
	return rule(policy.Attestation{PredicateType: imagetest.SLSAProvenanceV1, Conditions: conds})
}

func oneLine(t *testing.T, got verify.Verdict) {
	t.Helper()
	if strings.Contains(got.Reason, "\n") {
		t.Fatalf("reason is not one line: %q", got.Reason)
	}
}

func TestAttestations(t *testing.T) {
	w := newAttestWorld(t, imagetest.StartRegistry(t), registry.Options{})
	n := 0
	// image pushes a new image signed by ci, in a format that alternates,
	// so that both signature formats are seen with attestations.
	image := func(t *testing.T) verify.Subject {
		n++
		img := imagetest.PushImageConfig(t, fmt.Sprintf("%s:v%d", w.repo, n))
		formats[n%2].sign(t, w.repo, img.Digest, w.ci, imagetest.SignOptions{})
		return verify.Subject{Repository: w.repo, Digest: img.Digest, ConfigDigest: img.ConfigDigest}
	}
	attest := func(t *testing.T, s verify.Subject, signer *imagetest.Signer, pt, pred string) {
		imagetest.AttestBundle(t, w.repo, s.Digest, signer, pt, pred)
	}

	t.Run("provenance with the builder pinned, and an SBOM", func(t *testing.T) {
		s := image(t)
		attest(t, s, w.ci, imagetest.SLSAProvenanceV1, slsaPredicate)
		attest(t, s, w.ci, imagetest.SPDXDocument, spdxPredicate)
		with := rule(
			policy.Attestation{PredicateType: "slsaprovenance1", Conditions: []string{builderPinned, builderRegex}},
			policy.Attestation{PredicateType: "spdxjson", Conditions: []string{`predicate.packages.exists(p, p.name == "openssl" && p.versionInfo.startsWith("3."))`}},
		)
		got := check(t, w.v, s, with)
		wantAllowed(t, got, "ci")
		if !strings.Contains(got.Reason, "attested: slsaprovenance1, spdxjson") {
			t.Fatalf("reason %q does not list the attestations", got.Reason)
		}
	})

	t.Run("CycloneDX SBOM and a custom type, by URI", func(t *testing.T) {
		s := image(t)
		attest(t, s, w.ci, imagetest.CycloneDXBOM, cyclonedxPredicate)
		attest(t, s, w.ci, customType, customPredicate)
		with := rule(
			policy.Attestation{PredicateType: "https://cyclonedx.org/bom", Conditions: []string{`predicate.components.all(c, c.name != "log4j")`}},
			policy.Attestation{PredicateType: customType, Conditions: []string{"predicate.critical == 0", "predicate.high <= 5", "predicateType == '" + customType + "'"}},
		)
		wantAllowed(t, check(t, w.v, s, with), "ci")
	})

	t.Run("no conditions: the attestation alone", func(t *testing.T) {
		s := image(t)
		attest(t, s, w.ci, imagetest.SLSAProvenanceV1, `{}`)
		wantAllowed(t, check(t, w.v, s, slsaRule()), "ci")
	})

	t.Run("one of two attestations of the type passes", func(t *testing.T) {
		s := image(t)
		attest(t, s, w.ci, imagetest.SLSAProvenanceV1, strings.Replace(slsaPredicate, "github.com/org/app", "github.com/evil/app", -1))
		attest(t, s, w.ci, imagetest.SLSAProvenanceV1, slsaPredicate)
		wantAllowed(t, check(t, w.v, s, slsaRule(builderPinned)), "ci")
	})

	t.Run("unannotated referrer", func(t *testing.T) {
		s := image(t)
		imagetest.AttestBundleWith(t, w.repo, s.Digest, w.ci, imagetest.SLSAProvenanceV1, slsaPredicate, imagetest.AttestOptions{NoAnnotations: true})
		wantAllowed(t, check(t, w.v, s, slsaRule(builderPinned)), "ci")
	})

	for _, tc := range []struct {
		name   string
		setup  func(t *testing.T, s verify.Subject)
		with   policy.With
		reason []string
	}{
		{"attestation missing", func(t *testing.T, s verify.Subject) {},
			slsaRule(builderPinned),
			[]string{`no attestation of type https://slsa.dev/provenance/v1 signed by trust root "ci" for `}},
		{"wrong predicate type", func(t *testing.T, s verify.Subject) {
			attest(t, s, w.ci, imagetest.SPDXDocument, spdxPredicate)
			// The annotation names the wanted type; the signed statement does not.
			imagetest.AttestBundleWith(t, w.repo, s.Digest, w.ci, imagetest.CycloneDXBOM, cyclonedxPredicate, imagetest.AttestOptions{AnnotatedType: imagetest.SLSAProvenanceV1})
		}, slsaRule(),
			[]string{`no attestation of type https://slsa.dev/provenance/v1 signed by trust root "ci"`, "found signed attestations of type https://cyclonedx.org/bom"}},
		{"builder differs", func(t *testing.T, s verify.Subject) {
			attest(t, s, w.ci, imagetest.SLSAProvenanceV1, strings.Replace(slsaPredicate, "github.com/org/app/", "github.com/fork/app/", 1))
		}, slsaRule(builderPinned),
			[]string{"attestation https://slsa.dev/provenance/v1 (referrer sha256:", fmt.Sprintf("condition %q is false", builderPinned)}},
		{"regex miss", func(t *testing.T, s verify.Subject) {
			attest(t, s, w.ci, imagetest.SLSAProvenanceV1, strings.Replace(slsaPredicate, builderID, strings.Replace(builderID, "refs/tags/v1.0.0", "refs/heads/main", 1), 1))
		}, slsaRule(builderRegex),
			[]string{fmt.Sprintf("condition %q is false", builderRegex)}},
		{"second condition false", func(t *testing.T, s verify.Subject) {
			attest(t, s, w.ci, customType, `{"critical": 3}`)
		}, rule(policy.Attestation{PredicateType: customType, Conditions: []string{"true", "predicate.critical == 0"}}),
			[]string{`condition "predicate.critical == 0" is false`}},
		{"missing field", func(t *testing.T, s verify.Subject) {
			attest(t, s, w.ci, imagetest.SLSAProvenanceV1, `{"buildDefinition": {}}`)
		}, slsaRule(builderPinned),
			[]string{fmt.Sprintf("condition %q failed: no such key: runDetails", builderPinned)}},
		{"signed by a key the rule does not select", func(t *testing.T, s verify.Subject) {
			attest(t, s, w.dev, imagetest.SLSAProvenanceV1, slsaPredicate)
		}, slsaRule(builderPinned),
			[]string{`no attestation of type https://slsa.dev/provenance/v1 signed by trust root "ci"`, "does not verify"}},
		{"unsigned image, attested", nil, slsaRule(builderPinned),
			[]string{"no cosign signature found"}},
		{"one of two required attestations missing", func(t *testing.T, s verify.Subject) {
			attest(t, s, w.ci, imagetest.SLSAProvenanceV1, slsaPredicate)
		}, rule(policy.Attestation{PredicateType: "slsaprovenance1"}, policy.Attestation{PredicateType: "cyclonedx"}),
			[]string{"no attestation of type https://cyclonedx.org/bom signed by"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s verify.Subject
			if tc.setup == nil {
				// Attested (by the right key), but never signed.
				n++
				img := imagetest.PushImageConfig(t, fmt.Sprintf("%s:unsigned%d", w.repo, n))
				s = verify.Subject{Repository: w.repo, Digest: img.Digest, ConfigDigest: img.ConfigDigest}
				attest(t, s, w.ci, imagetest.SLSAProvenanceV1, slsaPredicate)
			} else {
				s = image(t)
				tc.setup(t, s)
			}
			got := check(t, w.v, s, tc.with)
			wantDenied(t, got, tc.reason...)
			oneLine(t, got)
		})
	}

	// A genuine attestation of another image, attached to this one.
	t.Run("replayed from another image", func(t *testing.T) {
		s, other := image(t), image(t)
		imagetest.AttestBundleWith(t, w.repo, s.Digest, w.ci, imagetest.SLSAProvenanceV1, slsaPredicate, imagetest.AttestOptions{SubjectDigest: other.Digest})
		got := check(t, w.v, s, slsaRule(builderPinned))
		wantDenied(t, got, "names digest "+other.Digest+", not "+s.Digest)
		// The same attestation made for other passes there.
		attest(t, other, w.ci, imagetest.SLSAProvenanceV1, slsaPredicate)
		wantAllowed(t, check(t, w.v, other, slsaRule(builderPinned)), "ci")
	})

	// The rule's roots, not the validator's: with dev selected too, dev's
	// attestation counts.
	t.Run("any selected root", func(t *testing.T) {
		s := image(t)
		attest(t, s, w.dev, imagetest.SLSAProvenanceV1, slsaPredicate)
		with := slsaRule(builderPinned)
		with.TrustRoot, with.Required = "*", []string{"ci"}
		wantAllowed(t, check(t, w.v, s, with), "ci")
	})
}

func TestAttestationsMultiArch(t *testing.T) {
	w := newAttestWorld(t, imagetest.StartRegistry(t), registry.Options{})
	for _, tc := range []struct {
		name     string
		attestOn func(idx imagetest.Index) string
	}{
		{"on the index", func(idx imagetest.Index) string { return idx.Digest }},
		{"on the platform manifest", func(idx imagetest.Index) string { return idx.Platforms[1].Digest }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			idx := imagetest.PushIndex(t, w.repo+":"+strings.ReplaceAll(tc.name, " ", "-"))
			imagetest.SignBundle(t, w.repo, idx.Digest, w.ci, imagetest.SignOptions{})
			imagetest.AttestBundle(t, w.repo, tc.attestOn(idx), w.ci, imagetest.SLSAProvenanceV1, slsaPredicate)
			arm := verify.Subject{Repository: w.repo, Digest: idx.Digest, ConfigDigest: idx.Platforms[1].ConfigDigest}
			wantAllowed(t, check(t, w.v, arm, slsaRule(builderPinned)), "ci")
		})
	}

	// An attestation of the arm64 manifest says nothing of amd64.
	t.Run("other platform", func(t *testing.T) {
		idx := imagetest.PushIndex(t, w.repo+":other-platform")
		imagetest.SignBundle(t, w.repo, idx.Digest, w.ci, imagetest.SignOptions{})
		imagetest.AttestBundle(t, w.repo, idx.Platforms[1].Digest, w.ci, imagetest.SLSAProvenanceV1, slsaPredicate)
		amd := verify.Subject{Repository: w.repo, Digest: idx.Digest, ConfigDigest: idx.Platforms[0].ConfigDigest}
		got := check(t, w.v, amd, slsaRule(builderPinned))
		wantDenied(t, got, "no attestation of type", idx.Digest+" or "+idx.Platforms[0].Digest)
	})
}

// Only MaxSignatures referrers are examined per digest; the reason says
// some were not.
func TestAttestationsCap(t *testing.T) {
	w := newAttestWorld(t, imagetest.StartRegistry(t), registry.Options{MaxSignatures: 1})
	img := imagetest.PushImageConfig(t, w.repo+":v1")
	imagetest.SignLegacy(t, w.repo, img.Digest, w.ci, imagetest.SignOptions{})
	for _, pred := range []string{`{"n": 1}`, `{"n": 2}`} {
		imagetest.AttestBundleWith(t, w.repo, img.Digest, w.ci, customType, pred, imagetest.AttestOptions{NoAnnotations: true})
	}
	s := verify.Subject{Repository: w.repo, Digest: img.Digest}
	got := check(t, w.v, s, rule(policy.Attestation{PredicateType: customType, Conditions: []string{"predicate.n == 3"}}))
	wantDenied(t, got, `condition "predicate.n == 3" is false`, "(1 more attestation over the cap not examined)")
}

// A registry failure while fetching an attestation leaves the answer open:
// an error, not a verdict.
func TestAttestationFetchErrorIsAnError(t *testing.T) {
	var failBlob atomic.Value // the path of the attestation's bundle blob
	failBlob.Store("")
	srv := imagetest.StartRegistryServer(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			if p := failBlob.Load().(string); p != "" && strings.HasSuffix(r.URL.Path, p) {
				http.Error(rw, "boom", http.StatusInternalServerError)
				return
			}
			h.ServeHTTP(rw, r)
		})
	})
	w := newAttestWorld(t, strings.TrimPrefix(srv.URL, "http://"), registry.Options{})
	img := imagetest.PushImageConfig(t, w.repo+":v1")
	imagetest.SignLegacy(t, w.repo, img.Digest, w.ci, imagetest.SignOptions{})
	raw := imagetest.AttestationJSON(t, w.repo, img.Digest, w.ci, imagetest.SLSAProvenanceV1, slsaPredicate, imagetest.AttestOptions{})
	imagetest.AttachReferrer(t, w.repo, img.Digest, imagetest.BundleMediaType, raw, nil)
	s := verify.Subject{Repository: w.repo, Digest: img.Digest}

	wantAllowed(t, check(t, w.v, s, slsaRule(builderPinned)), "ci")
	failBlob.Store(fmt.Sprintf("/blobs/sha256:%x", sha256.Sum256(raw)))
	got, err := w.v.Verify(context.Background(), s, slsaRule(builderPinned))
	if err == nil {
		t.Fatalf("attestation blob failing: verdict %+v, want an error", got)
	}
	if registry.IsDefinitive(err) || !strings.Contains(err.Error(), "fetching bundle of referrer") {
		t.Fatalf("error %v, want a transient error naming the referrer", err)
	}
	// Rules without attestations never look: the signature still passes.
	wantAllowed(t, check(t, w.v, s, policy.With{TrustRoot: "ci"}), "ci")
}

// What an attestation costs once the repository is warm (its signatures'
// place hinted): one referrers listing of the digest, shared with the
// signature lookup when the signatures are bundles, and the manifest and
// bundle of the attestation. A rule without attestations pays nothing more.
func TestAttestationRequests(t *testing.T) {
	for _, f := range formats {
		t.Run(f.name, func(t *testing.T) {
			rec := &recorder{next: http.DefaultTransport.(*http.Transport).Clone()}
			w := newAttestWorld(t, imagetest.StartRegistry(t), registry.Options{Transport: rec})
			with := slsaRule(builderPinned)
			for i := range 3 {
				img := imagetest.PushImageConfig(t, fmt.Sprintf("%s:%s%d", w.repo, f.name, i))
				f.sign(t, w.repo, img.Digest, w.ci, imagetest.SignOptions{})
				imagetest.AttestBundle(t, w.repo, img.Digest, w.ci, imagetest.SLSAProvenanceV1, slsaPredicate)
				imagetest.AttestBundle(t, w.repo, img.Digest, w.ci, imagetest.SPDXDocument, spdxPredicate)
				s := verify.Subject{Repository: w.repo, Digest: img.Digest, ConfigDigest: img.ConfigDigest}
				rec.take()
				wantAllowed(t, check(t, w.v, s, policy.With{TrustRoot: "ci"}), "ci")
				plain := rec.take()
				wantAllowed(t, check(t, w.v, s, with), "ci")
				attested := rec.take()
				t.Logf("%s #%d: %d requests without attestations, %d with: %v", f.name, i, len(plain), len(attested), attested)
				if i == 0 {
					continue // the first pays for the ping and finds the hint
				}
				if n := count(plain, "/referrers/"); f.name == "legacy" && n != 0 {
					t.Fatalf("legacy-signed, no attestations: %d referrers listings", n)
				}
				if n := count(attested, "/referrers/"); n != 1 {
					t.Fatalf("with attestations: %d referrers listings, want 1", n)
				}
				// The SBOM is skipped by its annotation: one manifest and
				// one blob for the provenance.
				if extra := len(attested) - len(plain); extra > 3 || (f.name == "bundle" && extra > 2) {
					t.Fatalf("attestations cost %d more requests", extra)
				}
			}
		})
	}
}

// cosign v2's attestations (the .att tag), for key roots of every kind.
func TestLegacyAttestations(t *testing.T) {
	host := imagetest.StartRegistry(t)
	repo := host + "/legacy"
	for _, kind := range imagetest.KeyKinds {
		t.Run(string(kind), func(t *testing.T) {
			ci, dev := imagetest.NewSigner(t, kind), imagetest.NewSigner(t, imagetest.ECDSAP256)
			v := newVerifier(t, newClient(t, registry.Options{}), root{"ci", ci}, root{"dev", dev})
			image := func(tag string) verify.Subject {
				img := imagetest.PushImageConfig(t, repo+":"+string(kind)+"-"+tag)
				imagetest.SignLegacy(t, repo, img.Digest, ci, imagetest.SignOptions{})
				return verify.Subject{Repository: repo, Digest: img.Digest, ConfigDigest: img.ConfigDigest}
			}

			good := image("good")
			imagetest.AttestLegacy(t, repo, good.Digest, ci, imagetest.SPDXDocument, spdxPredicate, imagetest.AttestOptions{})
			imagetest.AttestLegacy(t, repo, good.Digest, ci, imagetest.SLSAProvenanceV1, slsaPredicate, imagetest.AttestOptions{})
			wantAllowed(t, check(t, v, good, slsaRule(builderPinned, builderRegex)), "ci")

			// One requirement met by a bundle, the other by the .att tag.
			mixed := image("mixed")
			imagetest.AttestLegacy(t, repo, mixed.Digest, ci, imagetest.SLSAProvenanceV1, slsaPredicate, imagetest.AttestOptions{})
			imagetest.AttestBundle(t, repo, mixed.Digest, ci, imagetest.CycloneDXBOM, cyclonedxPredicate)
			wantAllowed(t, check(t, v, mixed, rule(policy.Attestation{PredicateType: "slsaprovenance1", Conditions: []string{builderPinned}}, policy.Attestation{PredicateType: "cyclonedx"})), "ci")

			other := image("other-key")
			imagetest.AttestLegacy(t, repo, other.Digest, dev, imagetest.SLSAProvenanceV1, slsaPredicate, imagetest.AttestOptions{})
			got := check(t, v, other, slsaRule(builderPinned))
			wantDenied(t, got, `no attestation of type https://slsa.dev/provenance/v1 signed by trust root "ci"`, "does not verify")

			replayed := image("replayed")
			imagetest.AttestLegacy(t, repo, replayed.Digest, ci, imagetest.SLSAProvenanceV1, slsaPredicate, imagetest.AttestOptions{SubjectDigest: good.Digest})
			wantDenied(t, check(t, v, replayed, slsaRule(builderPinned)), "names digest "+good.Digest+", not "+replayed.Digest)

			forked := image("forked")
			imagetest.AttestLegacy(t, repo, forked.Digest, ci, imagetest.SLSAProvenanceV1, strings.Replace(slsaPredicate, "github.com/org/app/", "github.com/fork/app/", 1), imagetest.AttestOptions{})
			got = check(t, v, forked, slsaRule(builderPinned))
			wantDenied(t, got, "(layer sha256:", fmt.Sprintf("condition %q is false", builderPinned))
			oneLine(t, got)
		})
	}
}
