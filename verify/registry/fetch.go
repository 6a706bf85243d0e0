package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Manifest is a manifest or index as the registry served it.
type Manifest struct {
	Raw []byte
	// MediaType comes from the content's own mediaType field when present
	// (the content is pinned by its digest, the Content-Type header is
	// not), else from the header, else from the content's shape.
	MediaType types.MediaType
	// Digest is the sha256 of Raw (for a tag, what the tag points to now).
	Digest v1.Hash
}

// Manifest fetches a manifest or index by digest or by tag. By digest, the
// content must hash to that digest.
func (c *Client) Manifest(ctx context.Context, ref name.Reference) (*Manifest, error) {
	desc, err := c.puller.Get(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("fetching manifest %s: %w", ref, describe(err))
	}
	algo := "sha256"
	d, byDigest := ref.(name.Digest)
	if byDigest {
		want, err := v1.NewHash(d.DigestStr())
		if err != nil {
			return nil, fmt.Errorf("fetching manifest %s: %w", ref, describe(err))
		}
		algo = want.Algorithm
	}
	got, err := hashOf(algo, desc.Manifest)
	if err != nil {
		return nil, fmt.Errorf("fetching manifest %s: %w", ref, describe(err))
	}
	// remote checks this too; checking here keeps the guarantee local.
	if byDigest && got.String() != d.DigestStr() {
		return nil, fmt.Errorf("fetching manifest %s: %w (got %s)", ref, ErrDigestMismatch, got)
	}
	return &Manifest{Raw: desc.Manifest, MediaType: mediaTypeOf(desc.Manifest, desc.MediaType), Digest: got}, nil
}

// SignatureManifest is Manifest for signature material fetched by digest
// (a referrer's manifest): it is held to Options.MaxSignatureBytes, as
// signature tags and referrer lists are whoever fetches them.
func (c *Client) SignatureManifest(ctx context.Context, ref name.Reference) (*Manifest, error) {
	return c.Manifest(withSignatureClass(ctx), ref)
}

// SignatureBlob is Blob for a signature (a simple-signing payload, a
// Sigstore bundle, a notation envelope): it is held to
// Options.MaxSignatureBytes rather than MaxBlobBytes.
func (c *Client) SignatureBlob(ctx context.Context, d name.Digest) ([]byte, error) {
	return c.Blob(withSignatureClass(ctx), d)
}

// Blob fetches a blob by digest and checks that it hashes to it.
func (c *Client) Blob(ctx context.Context, d name.Digest) ([]byte, error) {
	want, err := v1.NewHash(d.DigestStr())
	if err != nil {
		return nil, fmt.Errorf("fetching blob %s: %w", d, describe(err))
	}
	l, err := c.puller.Layer(ctx, d)
	if err != nil {
		return nil, fmt.Errorf("fetching blob %s: %w", d, describe(err))
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, fmt.Errorf("fetching blob %s: %w", d, describe(err))
	}
	defer rc.Close()
	b, err := readAll(rc) // capped by capTransport
	if err != nil {
		return nil, fmt.Errorf("fetching blob %s: %w", d, describe(err))
	}
	got, err := hashOf(want.Algorithm, b)
	if err != nil {
		return nil, fmt.Errorf("fetching blob %s: %w", d, describe(err))
	}
	if got != want {
		return nil, fmt.Errorf("fetching blob %s: %w (got %s)", d, ErrDigestMismatch, got)
	}
	return b, nil
}

// Resolve returns the digest a reference points to now (for the CLI; the
// daemon never trusts tags).
func (c *Client) Resolve(ctx context.Context, ref name.Reference) (v1.Hash, error) {
	if d, ok := ref.(name.Digest); ok {
		return v1.NewHash(d.DigestStr())
	}
	desc, err := c.puller.Head(ctx, ref)
	if err == nil {
		return desc.Digest, nil
	}
	if IsNotFound(err) {
		return v1.Hash{}, fmt.Errorf("resolving %s: %w", ref, describe(err))
	}
	// Some registries answer HEAD without Docker-Content-Digest: GET and hash.
	m, gerr := c.Manifest(ctx, ref)
	if gerr != nil {
		return v1.Hash{}, fmt.Errorf("resolving %s: %w", ref, gerr)
	}
	return m.Digest, nil
}

func hashOf(algo string, b []byte) (v1.Hash, error) {
	h, err := v1.Hasher(algo)
	if err != nil {
		return v1.Hash{}, err
	}
	h.Write(b)
	return v1.NewHash(fmt.Sprintf("%s:%x", algo, h.Sum(nil)))
}

func mediaTypeOf(raw []byte, header types.MediaType) types.MediaType {
	var shape struct {
		MediaType types.MediaType `json:"mediaType"`
		Manifests json.RawMessage `json:"manifests"`
		Config    json.RawMessage `json:"config"`
	}
	if err := json.NewDecoder(bytes.NewReader(raw)).Decode(&shape); err != nil {
		return header
	}
	switch {
	case shape.MediaType != "":
		return shape.MediaType
	case header != "":
		return header
	case shape.Manifests != nil:
		return types.OCIImageIndex
	case shape.Config != nil:
		return types.OCIManifestSchema1
	}
	return ""
}

// readChunk is the piece readAll reads at a time.
const readChunk = 32 << 10

// readAll reads r to its end in pieces and joins them. io.ReadAll grows
// one buffer by a quarter at a time and leaves each smaller one to the
// collector: a body of n bytes costs about 5n of heap until the next
// collection, and a stalled one holds up to a quarter more than it got.
// This holds what was read, and joining costs n more, once, at the end.
func readAll(r io.Reader) ([]byte, error) {
	var chunks [][]byte
	total := 0
	for {
		buf := make([]byte, readChunk)
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			chunks = append(chunks, buf[:n])
			total += n
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	out := make([]byte, 0, total)
	for _, c := range chunks {
		out = append(out, c...)
	}
	return out, nil
}
