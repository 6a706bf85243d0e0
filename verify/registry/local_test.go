package registry

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
)

// localStore is a content store holding some manifests.
type localStore struct {
	content map[string][]byte
	asked   atomic.Int32
}

func (l *localStore) Content(_ context.Context, digest string) ([]byte, error) {
	l.asked.Add(1)
	if b, ok := l.content[digest]; ok {
		return b, nil
	}
	return nil, errors.New("not found")
}

type countingTransport struct {
	n atomic.Int32
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return http.DefaultTransport.RoundTrip(r)
}

// With a local content store holding the image's manifests (containerd's,
// on a node), the chain check asks the registry nothing; content that does
// not hash to its digest is not believed.
func TestCandidatesFromLocalContent(t *testing.T) {
	host := imagetest.StartRegistry(t)
	repo := mustRepo(t, host+"/app")
	idx := imagetest.PushIndex(t, repo.String()+":v1")
	local := &localStore{content: map[string][]byte{}}
	for _, d := range []string{idx.Digest, idx.Platforms[0].Digest} {
		m, err := newClient(t, Options{}).Manifest(context.Background(), repo.Digest(d))
		if err != nil {
			t.Fatal(err)
		}
		local.content[d] = m.Raw
	}
	tr := &countingTransport{}
	c := newClient(t, Options{Local: local, Transport: tr})
	got, err := c.Candidates(context.Background(), repo, idx.Digest, idx.Platforms[0].ConfigDigest)
	if err != nil || len(got) != 2 || got[1] != idx.Platforms[0].Digest {
		t.Fatalf("Candidates = %v, %v", got, err)
	}
	if tr.n.Load() != 0 || local.asked.Load() != 2 {
		t.Fatalf("%d registry requests, %d local reads; want 0 and 2", tr.n.Load(), local.asked.Load())
	}

	// A lying store: its content for the index is another document. The
	// registry is asked instead, and the answer is the registry's.
	local.content[idx.Digest] = local.content[idx.Platforms[0].Digest]
	got, err = c.Candidates(context.Background(), repo, idx.Digest, idx.Platforms[0].ConfigDigest)
	if err != nil || len(got) != 2 {
		t.Fatalf("Candidates with a lying store = %v, %v", got, err)
	}
	if tr.n.Load() == 0 {
		t.Fatal("content that does not match its digest was believed")
	}

	// A store without the content: the registry.
	c = newClient(t, Options{Local: &localStore{}, Transport: tr})
	if got, err := c.Candidates(context.Background(), repo, idx.Digest, idx.Platforms[0].ConfigDigest); err != nil || len(got) != 2 {
		t.Fatalf("Candidates with an empty store = %v, %v", got, err)
	}
}
