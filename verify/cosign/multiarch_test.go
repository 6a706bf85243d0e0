package cosign

import (
	"testing"

	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/nri-image-verifier/nri-image-verifier/verify"
	"github.com/nri-image-verifier/nri-image-verifier/verify/registry"
)

func TestMultiArch(t *testing.T) {
	host := imagetest.StartRegistry(t)
	repo := host + "/multi"
	signer := imagetest.NewSigner(t, imagetest.ECDSAP256)
	v := newVerifier(t, newClient(t, registry.Options{}), root{"default", signer})
	subject := func(idx imagetest.Index, config string) verify.Subject {
		return verify.Subject{Repository: repo, Digest: idx.Digest, ConfigDigest: config}
	}

	t.Run("index signed, either platform runs", func(t *testing.T) {
		for _, f := range formats {
			idx := imagetest.PushIndex(t, repo+":index-"+f.name)
			f.sign(t, repo, idx.Digest, signer, imagetest.SignOptions{})
			for _, p := range idx.Platforms {
				wantAllowed(t, check(t, v, subject(idx, p.ConfigDigest), policy.With{}), "default")
			}
			// Without a config digest the index digest alone is checked.
			wantAllowed(t, check(t, v, subject(idx, ""), policy.With{}), "default")
		}
	})

	t.Run("platform manifest signed (recursive)", func(t *testing.T) {
		for _, f := range formats {
			idx := imagetest.PushIndex(t, repo+":recursive-"+f.name)
			arm := idx.Platforms[1]
			f.sign(t, repo, arm.Digest, signer, imagetest.SignOptions{})
			wantAllowed(t, check(t, v, subject(idx, arm.ConfigDigest), policy.With{}), "default")
			// The arm64 manifest's signature says nothing about amd64.
			wantDenied(t, check(t, v, subject(idx, idx.Platforms[0].ConfigDigest), policy.With{}), "no cosign signature found")
		}
	})

	t.Run("config not in the index", func(t *testing.T) {
		idx := imagetest.PushIndex(t, repo+":foreign-config")
		imagetest.SignLegacy(t, repo, idx.Digest, signer, imagetest.SignOptions{})
		other := imagetest.PushImageConfig(t, repo+":other")
		got := check(t, v, subject(idx, other.ConfigDigest), policy.With{})
		wantDenied(t, got, "no manifest in index "+idx.Digest+" has the container's config "+other.ConfigDigest)
	})

	t.Run("single manifest with the wrong config", func(t *testing.T) {
		img := imagetest.PushImageConfig(t, repo+":single")
		imagetest.SignBundle(t, repo, img.Digest, signer, imagetest.SignOptions{})
		wantAllowed(t, check(t, v, verify.Subject{Repository: repo, Digest: img.Digest, ConfigDigest: img.ConfigDigest}, policy.With{}), "default")
		other := imagetest.PushImageConfig(t, repo+":single-other")
		got := check(t, v, verify.Subject{Repository: repo, Digest: img.Digest, ConfigDigest: other.ConfigDigest}, policy.With{})
		wantDenied(t, got, "manifest "+img.Digest+" has config "+img.ConfigDigest+", not the container's config "+other.ConfigDigest)
	})

	t.Run("image not in the registry", func(t *testing.T) {
		img := imagetest.PushImageConfig(t, repo+":present")
		got := check(t, v, verify.Subject{Repository: host + "/elsewhere", Digest: img.Digest, ConfigDigest: img.ConfigDigest}, policy.With{})
		wantDenied(t, got, "is not in the registry")
	})

	// A signature on the index that names one of its platform manifests was
	// not made for the index: it does not count for it, though the platform
	// manifest is a candidate too.
	t.Run("signature found under the index naming the platform manifest", func(t *testing.T) {
		idx := imagetest.PushIndex(t, repo+":crossed")
		amd := idx.Platforms[0]
		imagetest.SignLegacy(t, repo, idx.Digest, signer, imagetest.SignOptions{PayloadDigest: amd.Digest})
		got := check(t, v, subject(idx, amd.ConfigDigest), policy.With{})
		wantDenied(t, got, "signature names digest "+amd.Digest+", not "+idx.Digest)
	})
}
