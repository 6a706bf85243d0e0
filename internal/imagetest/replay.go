package imagetest

import (
	"bytes"
	"errors"
	"net/http"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// CopySignatures replays the signatures of digest from onto digest to in
// the same repository, as an attacker with push access would: the
// `.sig` image is copied to to's tag unchanged, and every referrer of from
// is pushed again with to as its subject. The signatures stay genuine but
// name from. It fails the test if from has no signature at all.
func CopySignatures(t testing.TB, repo, from, to string) {
	t.Helper()
	r := parseRepo(t, repo)
	copied := 0

	desc, err := remote.Get(SigTag(r, from))
	var terr *transport.Error
	switch {
	case err == nil:
		if err := remote.Put(SigTag(r, to), desc); err != nil {
			t.Fatalf("imagetest: copy %s: %v", SigTag(r, from), err)
		}
		copied++
	case errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound:
	default:
		t.Fatalf("imagetest: get %s: %v", SigTag(r, from), err)
	}

	idx, err := remote.Referrers(r.Digest(from))
	if err != nil {
		t.Fatalf("imagetest: referrers of %s: %v", from, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatalf("imagetest: referrers of %s: %v", from, err)
	}
	subj, err := remote.Head(r.Digest(to))
	if err != nil {
		t.Fatalf("imagetest: head %s: %v", to, err)
	}
	for _, d := range im.Manifests {
		ref, err := remote.Get(r.Digest(d.Digest.String()))
		if err != nil {
			t.Fatalf("imagetest: get referrer %s: %v", d.Digest, err)
		}
		m, err := v1.ParseManifest(bytes.NewReader(ref.Manifest))
		if err != nil {
			t.Fatalf("imagetest: parse referrer %s: %v", d.Digest, err)
		}
		m.Subject = &v1.Descriptor{MediaType: subj.MediaType, Digest: subj.Digest, Size: subj.Size}
		putReferrer(t, r, *m)
		copied++
	}
	if copied == 0 {
		t.Fatalf("imagetest: %s has no signature to copy", from)
	}
}
