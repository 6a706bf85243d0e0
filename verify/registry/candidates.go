package registry

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"sort"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"
)

// Candidates returns the digests whose signatures count for a container
// whose image is digest (the top-level digest the runtime uses: a manifest
// or an index) and whose image config is configDigest.
//
// Without a configDigest, only digest itself. With one, the registry must
// show that digest leads to that config: a manifest must name it as its
// config; an index must list a platform manifest that does, and then both
// the index (publishers usually sign that) and the platform manifest (signed
// with cosign --recursive) are candidates. A chain that does not lead to the
// config is a *DefinitiveError; registry failures are other errors.
func (c *Client) Candidates(ctx context.Context, repo name.Repository, digest, configDigest string) ([]string, error) {
	if _, err := v1.NewHash(digest); err != nil {
		return nil, &DefinitiveError{Reason: fmt.Sprintf("image digest %q is not a valid digest", digest), Err: err}
	}
	if configDigest == "" {
		return []string{digest}, nil
	}
	if _, err := v1.NewHash(configDigest); err != nil {
		return nil, &DefinitiveError{Reason: fmt.Sprintf("config digest %q is not a valid digest", configDigest), Err: err}
	}
	top, err := c.chainManifest(ctx, repo, digest)
	if IsNotFound(err) {
		return nil, &DefinitiveError{Reason: fmt.Sprintf("image %s@%s is not in the registry, so its config cannot be checked", repo, digest), Err: err}
	}
	if err != nil {
		return nil, err
	}
	switch {
	case top.MediaType.IsImage():
		cfg, err := configOf(top.Raw)
		if err != nil {
			return nil, &DefinitiveError{Reason: fmt.Sprintf("manifest %s is not a valid image manifest", digest), Err: err}
		}
		if cfg != configDigest {
			return nil, &DefinitiveError{Reason: fmt.Sprintf("manifest %s has config %s, not the container's config %s", digest, cfg, configDigest)}
		}
		return []string{digest}, nil
	case top.MediaType.IsIndex():
		child, err := c.childWithConfig(ctx, repo, digest, top.Raw, configDigest)
		if err != nil {
			return nil, err
		}
		return []string{digest, child}, nil
	default:
		return nil, &DefinitiveError{Reason: fmt.Sprintf("%s has media type %q, neither an image manifest nor an index", digest, top.MediaType)}
	}
}

// childWithConfig finds the platform manifest of an index whose config is
// configDigest. This node's own platform is tried first, alone: it is
// almost always the one, and so costs one request instead of one per
// platform.
func (c *Client) childWithConfig(ctx context.Context, repo name.Repository, digest string, raw []byte, configDigest string) (string, error) {
	im, err := v1.ParseIndexManifest(bytes.NewReader(raw))
	if err != nil {
		return "", &DefinitiveError{Reason: fmt.Sprintf("index %s is not a valid image index", digest), Err: err}
	}
	var kids []v1.Descriptor
	for _, d := range im.Manifests {
		// Nested indexes are not followed; nobody publishes them for images.
		if d.MediaType.IsImage() {
			kids = append(kids, d)
		}
	}
	sort.SliceStable(kids, func(i, j int) bool { return isLocal(kids[i]) && !isLocal(kids[j]) })
	total := len(kids)
	if len(kids) > c.opts.MaxIndexEntries {
		kids = kids[:c.opts.MaxIndexEntries]
	}
	local := 0
	for local < len(kids) && isLocal(kids[local]) {
		local++
	}
	var transient error
	for _, phase := range [][]v1.Descriptor{kids[:local], kids[local:]} {
		found, err := c.findConfig(ctx, repo, phase, configDigest)
		if found != "" {
			return found, nil
		}
		if err != nil && transient == nil {
			transient = err
		}
	}
	if transient != nil {
		// A manifest we could not fetch may be the one.
		return "", transient
	}
	checked := fmt.Sprintf("%d platform manifests checked", len(kids))
	if total > len(kids) {
		checked = fmt.Sprintf("only the first %d of %d platform manifests checked", len(kids), total)
	}
	return "", &DefinitiveError{Reason: fmt.Sprintf("no manifest in index %s has the container's config %s (%s)", digest, configDigest, checked)}
}

// findConfig fetches the manifests concurrently and returns the digest of
// one whose config is configDigest, or the first transient error.
func (c *Client) findConfig(ctx context.Context, repo name.Repository, kids []v1.Descriptor, configDigest string) (string, error) {
	if len(kids) == 0 {
		return "", nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		found    string
		firstErr error
		g        errgroup.Group
	)
	g.SetLimit(4)
	for _, k := range kids {
		g.Go(func() error {
			ok, err := c.hasConfig(ctx, repo, k.Digest, configDigest)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case ok && found == "":
				found = k.Digest.String()
				cancel() // the others are moot
			case err != nil && firstErr == nil && found == "":
				firstErr = err
			}
			return nil
		})
	}
	_ = g.Wait() // the goroutines report through found and firstErr
	if found != "" {
		return found, nil
	}
	return "", firstErr
}

func (c *Client) hasConfig(ctx context.Context, repo name.Repository, d v1.Hash, configDigest string) (bool, error) {
	m, err := c.chainManifest(ctx, repo, d.String())
	if IsNotFound(err) {
		return false, nil // listed but gone: not the one
	}
	if err != nil {
		return false, err
	}
	if !m.MediaType.IsImage() {
		return false, nil
	}
	cfg, err := configOf(m.Raw)
	if err != nil {
		return false, nil // malformed: cannot be the one
	}
	return cfg == configDigest, nil
}

func configOf(raw []byte) (string, error) {
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return "", err
	}
	if m.Config.Digest.Hex == "" {
		return "", fmt.Errorf("manifest has no config digest")
	}
	return m.Config.Digest.String(), nil
}

func isLocal(d v1.Descriptor) bool {
	return d.Platform != nil && d.Platform.OS == runtime.GOOS && d.Platform.Architecture == runtime.GOARCH
}

// chainManifest is Manifest by digest, from Options.Local when it has the
// content, else from the registry. Content is addressed by its digest, so
// where it comes from changes nothing once the digest is checked.
func (c *Client) chainManifest(ctx context.Context, repo name.Repository, digest string) (*Manifest, error) {
	if c.opts.Local != nil {
		if raw, err := c.opts.Local.Content(ctx, digest); err == nil && int64(len(raw)) <= c.opts.MaxManifestBytes {
			want, err := v1.NewHash(digest)
			if err == nil {
				if got, err := hashOf(want.Algorithm, raw); err == nil && got == want {
					return &Manifest{Raw: raw, MediaType: mediaTypeOf(raw, ""), Digest: got}, nil
				}
			}
		}
	}
	return c.Manifest(ctx, repo.Digest(digest))
}
