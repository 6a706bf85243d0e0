package cosign

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/nri-image-verifier/nri-image-verifier/verify"
	"github.com/nri-image-verifier/nri-image-verifier/verify/registry"
)

// descriptorList is n descriptors of mediaType, with distinct digests and
// the annotations cosign's layers carry, as JSON array elements.
func descriptorList(n int, mediaType, extra string) string {
	items := make([]string, n)
	for i := range items {
		items[i] = fmt.Sprintf(`{"mediaType":%q,"digest":"sha256:%064x","size":1%s}`, mediaType, i+1, extra)
	}
	return strings.Join(items, ",")
}

// A signature image or a referrer list with more entries than
// MaxDescriptors is refused with an error naming the count and the
// limit, before a single entry is fetched.
func TestTooManyDescriptorsRefused(t *testing.T) {
	const n = 1000
	sigManifest := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",` +
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:` + strings.Repeat("0", 64) + `","size":2},` +
		`"layers":[` + descriptorList(n, simpleSigningMediaType, `,"annotations":{"dev.cosignproject.cosign/signature":"AAAA"}`) + `]}`
	referrers := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[` +
		descriptorList(n, "application/vnd.oci.image.manifest.v1+json", `,"artifactType":"`+bundleMediaType+`"`) + `]}`
	var fetched atomic.Int64 // requests for any listed entry
	var long atomic.Value    // which list is long: ".sig" or "/referrers/"
	long.Store("")
	srv := imagetest.StartRegistryServer(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch {
			case !strings.Contains(r.URL.Path, long.Load().(string)):
				h.ServeHTTP(w, r)
			case strings.HasSuffix(r.URL.Path, ".sig"):
				w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
				_, _ = w.Write([]byte(sigManifest))
			case strings.Contains(r.URL.Path, "/referrers/"):
				w.Header().Set("Content-Type", "application/vnd.oci.image.index.v1+json")
				_, _ = w.Write([]byte(referrers))
			default:
				if strings.Contains(r.URL.Path, "sha256:0000000000") {
					fetched.Add(1)
				}
				h.ServeHTTP(w, r)
			}
		})
	})
	if len(sigManifest) > registry.DefaultMaxSignatureBytes || len(referrers) > registry.DefaultMaxSignatureBytes {
		t.Fatalf("lists of %d and %d bytes: the size cap would refuse them first", len(sigManifest), len(referrers))
	}
	repo := strings.TrimPrefix(srv.URL, "http://") + "/app"
	d := imagetest.PushImage(t, repo+":v1")
	v := newVerifier(t, newClient(t, registry.Options{}), root{"default", imagetest.NewSigner(t, imagetest.ECDSAP256)})
	for what, part := range map[string]string{"signature image": ".sig", "referrer list": "/referrers/"} {
		long.Store(part)
		_, err := v.Verify(context.Background(), verify.Subject{Repository: repo, Digest: d}, policy.With{})
		if !errors.Is(err, registry.ErrTooMany) || !strings.Contains(err.Error(), what) ||
			!strings.Contains(err.Error(), fmt.Sprintf("has %d entries, more than the limit of 128", n)) {
			t.Fatalf("long %s: error %v, want ErrTooMany naming it, %d and the limit", what, err, n)
		}
		if f := fetched.Load(); f != 0 {
			t.Fatalf("long %s: %d listed entries fetched", what, f)
		}
		t.Logf("error: %v", err)
	}
}
