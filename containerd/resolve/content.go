package resolve

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"

	contentapi "github.com/containerd/containerd/api/services/content/v1"
	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc/metadata"
)

// maxManifest bounds what is read from the content store: manifests and
// indexes are kilobytes.
const maxManifest = 4 << 20

type platformMatcher = platforms.MatchComparer

func defaultPlatform() platformMatcher {
	return platforms.Only(platforms.DefaultSpec())
}

// configOf returns the config digest a manifest or index leads to on this
// node's platform. depth stops index-in-index loops.
func (r *Resolver) configOf(ctx context.Context, mediaType, digest string, depth int) (string, error) {
	if depth > 2 {
		return "", errors.New("nested indexes too deep")
	}
	raw, err := r.read(ctx, digest)
	if err != nil {
		return "", err
	}
	var probe struct {
		MediaType string               `json:"mediaType"`
		Config    *ocispec.Descriptor  `json:"config"`
		Manifests []ocispec.Descriptor `json:"manifests"`
	}
	if err := json.Unmarshal(raw, &probe); err != nil {
		return "", fmt.Errorf("content %s is not a manifest or index: %w", digest, err)
	}
	if probe.Config != nil {
		return probe.Config.Digest.String(), nil
	}
	if probe.Manifests == nil {
		return "", fmt.Errorf("content %s (%s) is neither a manifest nor an index", digest, mediaType)
	}
	var best *ocispec.Descriptor
	for i, m := range probe.Manifests {
		if m.Platform == nil || !r.platform.Match(*m.Platform) {
			continue
		}
		if best == nil || r.platform.Less(*m.Platform, *best.Platform) {
			best = &probe.Manifests[i]
		}
	}
	if best == nil {
		return "", fmt.Errorf("index %s has no manifest for %s/%s", digest, runtime.GOOS, runtime.GOARCH)
	}
	return r.configOf(ctx, best.MediaType, best.Digest.String(), depth+1)
}

// Content reads a manifest or index (at most 4 MiB) from containerd's
// content store and checks that it hashes to digest: registry.LocalContent,
// for the chain check to read what the node already holds.
func (r *Resolver) Content(ctx context.Context, digest string) ([]byte, error) {
	return r.read(metadata.AppendToOutgoingContext(ctx, "containerd-namespace", r.namespace), digest)
}

// read fetches a blob from containerd's content store and checks its digest.
func (r *Resolver) read(ctx context.Context, digest string) ([]byte, error) {
	hexPart, ok := strings.CutPrefix(digest, "sha256:")
	if !ok {
		return nil, fmt.Errorf("digest %q: only sha256 is supported", digest)
	}
	stream, err := r.content.Read(ctx, &contentapi.ReadContentRequest{Digest: digest})
	if err != nil {
		return nil, fmt.Errorf("containerd: read %s: %w", digest, err)
	}
	var buf []byte
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("containerd: read %s: %w", digest, err)
		}
		buf = append(buf, resp.GetData()...)
		if len(buf) > maxManifest {
			return nil, fmt.Errorf("containerd: %s is larger than %d bytes", digest, maxManifest)
		}
	}
	sum := sha256.Sum256(buf)
	if hex.EncodeToString(sum[:]) != hexPart {
		return nil, fmt.Errorf("containerd: content %s does not match its digest", digest)
	}
	return buf, nil
}
