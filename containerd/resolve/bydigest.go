package resolve

import (
	"context"
	"fmt"
	"regexp"

	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	"google.golang.org/grpc/metadata"

	"github.com/nri-image-verifier/nri-image-verifier/imageref"
)

// sha256Digest is the only digest form containerd names image volume
// directories by; anything else must not reach a filter expression.
var sha256Digest = regexp.MustCompile(`^sha256:[a-f0-9]{64}$`)

// ImagesOf returns every image record containerd holds whose target is
// digest, one Image per name, under containerd's own spelling of the name
// (rules are matched on it, as on the name containerd >= 2.4 sends through
// NRI). Records named by an image ID are left out: they name no
// repository. This is how an image volume, whose mount carries only the
// digest, gets its names; the caller decides what several names mean.
func (r *Resolver) ImagesOf(ctx context.Context, digest string) ([]Image, error) {
	if !sha256Digest.MatchString(digest) {
		return nil, fmt.Errorf("digest %q is not sha256:<64 lowercase hex digits>", digest)
	}
	ctx = metadata.AppendToOutgoingContext(ctx, "containerd-namespace", r.namespace)
	list, err := r.images.List(ctx, &imagesapi.ListImagesRequest{Filters: []string{"target.digest==" + digest}})
	if err != nil {
		return nil, fmt.Errorf("containerd: list images with target %s: %w", digest, err)
	}
	var (
		out    []Image
		config string
	)
	for _, img := range list.GetImages() {
		if imageref.IsImageID(img.GetName()) {
			continue
		}
		// A filter is only a filter: take no record for another target.
		if got := img.GetTarget().GetDigest(); got != digest {
			return nil, fmt.Errorf("containerd: image %q has target %s, asked for %s", img.GetName(), got, digest)
		}
		if config == "" {
			// One target, one config for this platform: read it once.
			d, err := r.describe(ctx, img.GetName(), img)
			if err != nil {
				return nil, err
			}
			config = d.ConfigDigest
		}
		out = append(out, Image{Name: img.GetName(), Digest: digest, ConfigDigest: config})
	}
	return out, nil
}
