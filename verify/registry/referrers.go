package registry

import (
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// EmptyConfigType is the OCI empty descriptor's media type, the config of
// artifacts that follow the OCI 1.1 artifact guidance (cosign's bundles).
const EmptyConfigType = "application/vnd.oci.empty.v1+json"

// Referrers lists the OCI 1.1 referrers of d that may have the given
// artifactType. It uses the referrers API and, where the registry lacks it,
// the referrers tag (sha256-<hex>), as remote.Referrers does.
//
// Besides exact matches it returns entries whose artifactType is empty or
// EmptyConfigType: registries that derive artifactType from config.mediaType
// alone (go-containerregistry's own pkg/registry among them) list every
// cosign bundle that way. The caller must check the artifactType of the
// referrer manifest it fetches.
func (c *Client) Referrers(ctx context.Context, d name.Digest, artifactType string) ([]v1.Descriptor, error) {
	idx, err := remote.Referrers(d, remote.Reuse(c.puller), remote.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("listing referrers of %s: %w", d, describe(err))
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("listing referrers of %s: %w", d, describe(err))
	}
	if err := c.CheckDescriptors("referrer list of "+d.String(), len(im.Manifests)); err != nil {
		return nil, err
	}
	var out []v1.Descriptor
	for _, desc := range im.Manifests {
		switch desc.ArtifactType {
		case artifactType, EmptyConfigType, "":
			out = append(out, desc)
		}
	}
	return out, nil
}

// CheckDescriptors refuses a signature manifest or referrer list (what)
// with n descriptors when n is over Options.MaxDescriptors. Callers check
// before they look at any descriptor; the list's size in bytes, and so
// the work of parsing it, is already bounded by MaxSignatureBytes.
func (c *Client) CheckDescriptors(what string, n int) error {
	if n > c.opts.MaxDescriptors {
		return fmt.Errorf("%w: %s has %d entries, more than the limit of %d", ErrTooMany, what, n, c.opts.MaxDescriptors)
	}
	return nil
}
