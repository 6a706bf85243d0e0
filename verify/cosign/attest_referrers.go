package cosign

import (
	"context"
	"slices"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// listings keeps the bundle referrer listings of one verification, so that
// the attestation check reuses those the signature lookup made: a
// bundle-signed image then costs one listing, not two. Only a verification
// with attestations carries one (see Verify); only successful listings are
// kept, so a lookup cancelled once the signatures were decided leaves
// nothing behind.
type listings struct {
	mu sync.Mutex
	m  map[string][]v1.Descriptor
}

type listingsKey struct{}

func withListings(ctx context.Context) context.Context {
	return context.WithValue(ctx, listingsKey{}, &listings{m: map[string][]v1.Descriptor{}})
}

// referrers lists the Sigstore bundle referrers of cand (see
// registry.Client.Referrers), once per verification that keeps listings.
func (v *Verifier) referrers(ctx context.Context, repo name.Repository, cand string) ([]v1.Descriptor, error) {
	l, _ := ctx.Value(listingsKey{}).(*listings)
	if l != nil {
		l.mu.Lock()
		descs, ok := l.m[cand]
		l.mu.Unlock()
		if ok {
			return slices.Clone(descs), nil
		}
	}
	descs, err := v.base.Reg.Referrers(ctx, repo.Digest(cand), bundleMediaType)
	if err != nil || l == nil {
		return descs, err
	}
	l.mu.Lock()
	l.m[cand] = slices.Clone(descs)
	l.mu.Unlock()
	return descs, nil
}
