package registry

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
)

func TestCandidates(t *testing.T) {
	srv := imagetest.StartRegistryServer(t, nil)
	repo := mustRepo(t, strings.TrimPrefix(srv.URL, "http://")+"/app")
	img := imagetest.PushImageConfig(t, repo.String()+":single")
	idx := imagetest.PushIndex(t, repo.String()+":multi")
	amd, arm := idx.Platforms[0], idx.Platforms[1]
	c := newClient(t, Options{})
	ctx := context.Background()

	for _, tc := range []struct {
		name, digest, config string
		want                 []string
		definitive           string // non-empty: want a DefinitiveError containing it
	}{
		{"no config: the digest alone", img.Digest, "", []string{img.Digest}, ""},
		{"manifest leads to its config", img.Digest, img.ConfigDigest, []string{img.Digest}, ""},
		{"manifest with another config", img.Digest, amd.ConfigDigest, nil, "has config " + img.ConfigDigest + ", not the container's config " + amd.ConfigDigest},
		{"index: local platform", idx.Digest, amd.ConfigDigest, []string{idx.Digest, amd.Digest}, ""},
		{"index: other platform", idx.Digest, arm.ConfigDigest, []string{idx.Digest, arm.Digest}, ""},
		{"index without the config", idx.Digest, img.ConfigDigest, nil, "no manifest in index " + idx.Digest + " has the container's config"},
		{"platform manifest as top level", arm.Digest, arm.ConfigDigest, []string{arm.Digest}, ""},
		{"not in the registry", "sha256:" + strings.Repeat("0", 64), img.ConfigDigest, nil, "is not in the registry"},
		{"bad digest", "latest", "", nil, "is not a valid digest"},
		{"bad config digest", img.Digest, "sha256:xyz", nil, "is not a valid digest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := c.Candidates(ctx, repo, tc.digest, tc.config)
			if tc.definitive != "" {
				if !IsDefinitive(err) || !strings.Contains(err.Error(), tc.definitive) {
					t.Fatalf("got %v, %v; want a definitive error containing %q", got, err, tc.definitive)
				}
				return
			}
			if err != nil || fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}

	srv.Close()
	if _, err := c.Candidates(ctx, repo, idx.Digest, amd.ConfigDigest); err == nil || IsDefinitive(err) {
		t.Fatalf("registry down: %v, want a transient error", err)
	}
}

// Only the entries up to the cap are fetched.
func TestCandidatesIndexCap(t *testing.T) {
	host := imagetest.StartRegistry(t)
	repo := mustRepo(t, host+"/app")
	idx := imagetest.PushIndex(t, repo.String()+":multi")
	c := newClient(t, Options{MaxIndexEntries: 1})
	_, err := c.Candidates(context.Background(), repo, idx.Digest, idx.Platforms[1].ConfigDigest)
	if !IsDefinitive(err) || !strings.Contains(err.Error(), "only the first 1 of 2 platform manifests checked") {
		t.Fatalf("got %v", err)
	}
}
