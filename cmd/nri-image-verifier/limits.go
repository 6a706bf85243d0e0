package main

import (
	"flag"

	"github.com/nri-image-verifier/nri-image-verifier/verify/registry"
)

// registryLimits are the flags that bound what a registry can make the
// daemon hold: size caps per kind of response, the node-wide budget for
// bodies in flight, and the longest list of signatures looked at.
type registryLimits struct {
	manifest    byteSize
	signature   byteSize
	blob        byteSize
	budget      byteSize
	descriptors int
}

func (l *registryLimits) register(fs *flag.FlagSet) {
	l.manifest = registry.DefaultMaxManifestBytes
	l.signature = registry.DefaultMaxSignatureBytes
	l.blob = registry.DefaultMaxBlobBytes
	l.budget = registry.DefaultBodyBudget
	fs.Var(&l.manifest, "registry-max-manifest-bytes", "largest image manifest or index read from a registry (a `size`: bytes, or a number with Ki, Mi or Gi)")
	fs.Var(&l.signature, "registry-max-signature-bytes", "largest signature material read from a registry, in `size`: cosign .sig/.att/.sbom tag manifests, referrer lists and manifests, signature payloads, bundles and notation envelopes")
	fs.Var(&l.blob, "registry-max-blob-bytes", "largest other blob read from a registry, in `size`: attestations (in-toto statements with SBOM or provenance predicates)")
	fs.Var(&l.budget, "registry-body-budget", "most bytes (a `size`) of registry response bodies being read at once by all verifications together; past it a read fails and the verification is retried after --cache-error-ttl; at least the largest size cap")
	fs.IntVar(&l.descriptors, "registry-max-descriptors", registry.DefaultMaxDescriptors, "most entries a signature manifest or referrer list may have; a longer one is refused before any entry is fetched")
}

func (l *registryLimits) apply(o *registry.Options) {
	o.MaxManifestBytes = int64(l.manifest)
	o.MaxSignatureBytes = int64(l.signature)
	o.MaxBlobBytes = int64(l.blob)
	o.BodyBudget = int64(l.budget)
	o.MaxDescriptors = l.descriptors
}
