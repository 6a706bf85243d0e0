package cosign

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/nri-image-verifier/nri-image-verifier/verify"
	"github.com/nri-image-verifier/nri-image-verifier/verify/registry"
)

// filler is what the hostile registry sends; one buffer, so that the
// registry's side of the test costs the heap nothing per request.
var filler = []byte(strings.Repeat(" ", 4<<20))

// memoryAttack is issue #14's hostile registry. Its lists (a .sig
// manifest, a referrer list) are just under the signature cap and name
// 32 entries each; every listed entry it cannot serve for real (payload
// and bundle blobs, referrer manifests) sends one byte less than its cap
// and then stalls.
type memoryAttack struct {
	sigCap, blobCap int
	sig             string            // the .sig manifest; "" leaves the registry's own
	referrers       string            // the referrer list
	served          map[string][]byte // manifests served as they are, by digest
}

// Digest prefixes of what the hostile lists name: entries that stall at
// the signature cap, and attestation bundles that stall at the blob cap.
const (
	stallSig  = "sha256:0000000000"
	stallBlob = "sha256:1111111111"
)

func padTo(s string, size int) string {
	return strings.Replace(s, "PAD", strings.Repeat("x", max(0, size-512-len(s))), 1)
}

// signatureAttack lists 32 legacy signatures and 32 bundle referrers,
// none of which ever arrives.
func signatureAttack(sigCap int) *memoryAttack {
	return &memoryAttack{sigCap: sigCap,
		sig: padTo(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
			`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:`+strings.Repeat("0", 64)+`","size":2},`+
			`"layers":[`+descriptorList(32, simpleSigningMediaType, `,"annotations":{"dev.cosignproject.cosign/signature":"AAAA"}`)+`],"annotations":{"pad":"PAD"}}`, sigCap),
		referrers: padTo(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[`+
			descriptorList(32, "application/vnd.oci.image.manifest.v1+json", `,"artifactType":"`+bundleMediaType+`"`)+`],"annotations":{"pad":"PAD"}}`, sigCap),
	}
}

// attestationAttack lists 32 genuine-looking attestation referrers whose
// bundles never arrive; the image's own signature is left to verify, as
// it must before attestations are looked at.
func attestationAttack(sigCap, blobCap int) *memoryAttack {
	a := &memoryAttack{sigCap: sigCap, blobCap: blobCap, served: map[string][]byte{}}
	var entries []string
	for i := range 32 {
		m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":%q,`+
			`"config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},`+
			`"layers":[{"mediaType":%q,"digest":"%s%054x","size":%d}]}`, bundleMediaType, bundleMediaType, stallBlob, i, blobCap-1)
		d := fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(m)))
		a.served[d] = []byte(m)
		entries = append(entries, fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":%d,"artifactType":%q,"annotations":{%q:%q}}`,
			d, len(m), bundleMediaType, predicateAnnotation, imagetest.SLSAProvenanceV1))
	}
	a.referrers = `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[` + strings.Join(entries, ",") + `]}`
	return a
}

func (a *memoryAttack) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		ref := p[strings.LastIndex(p, "/")+1:]
		switch {
		case strings.HasSuffix(p, ".sig") && a.sig != "":
			w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
			_, _ = w.Write([]byte(a.sig))
		case strings.Contains(p, "/referrers/"):
			w.Header().Set("Content-Type", "application/vnd.oci.image.index.v1+json")
			_, _ = w.Write([]byte(a.referrers))
		case a.served[ref] != nil:
			w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
			_, _ = w.Write(a.served[ref])
		case strings.HasPrefix(ref, stallSig):
			stall(w, r, a.sigCap-1)
		case strings.HasPrefix(ref, stallBlob):
			stall(w, r, a.blobCap-1)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

func stall(w http.ResponseWriter, r *http.Request, n int) {
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(filler[:n])
	w.(http.Flusher).Flush()
	<-r.Context().Done()
}

// heapPeak runs n verifications of distinct digests at once against the
// attack (signing each with signer first, if given) and returns the peak
// of HeapInuse above where it started, and each verification's error.
func heapPeak(t *testing.T, a *memoryAttack, opts registry.Options, with policy.With, n int) (heap, budget uint64, errs []error) {
	srv := imagetest.StartRegistryServer(t, a.wrap)
	repo := strings.TrimPrefix(srv.URL, "http://") + "/app"
	signer := imagetest.NewSigner(t, imagetest.ECDSAP256)
	digests := make([]string, n)
	for i := range digests {
		digests[i] = imagetest.PushImage(t, fmt.Sprintf("%s:v%d", repo, i))
		if a.sig == "" {
			imagetest.SignLegacy(t, repo, digests[i], signer, imagetest.SignOptions{})
		}
	}
	c := newClient(t, opts)
	v := newVerifier(t, c, root{"default", signer})

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak, budgetPeak atomic.Uint64
	stop, sampled := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > base && ms.HeapInuse-base > peak.Load() {
				peak.Store(ms.HeapInuse - base)
			}
			if b := uint64(c.BodyBytesInUse()); b > budgetPeak.Load() {
				budgetPeak.Store(b)
			}
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	errs = make([]error, n)
	var wg sync.WaitGroup
	for i, d := range digests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			_, errs[i] = v.Verify(ctx, verify.Subject{Repository: repo, Digest: d}, with)
		}()
	}
	wg.Wait()
	close(stop)
	<-sampled
	return peak.Load(), budgetPeak.Load(), errs
}

// mainLimits are the limits before issue #14: one 4 MiB cap for every
// manifest and blob, no body budget, no limit on list lengths.
var mainLimits = registry.Options{MaxManifestBytes: 4 << 20, MaxSignatureBytes: 4 << 20, MaxBlobBytes: 4 << 20, BodyBudget: 1 << 40, MaxDescriptors: 1 << 20}

// Sixteen verifications at once (the node's concurrency limit) against
// the hostile registry: the heap they make stays far below the chart's
// 256 Mi limit and every one fails closed. NIV_MEMATTACK_MAIN=1 also
// measures main's limits under the same attacks, for the record.
func TestHeapUnderMemoryAttack(t *testing.T) {
	if testing.Short() {
		t.Skip("sends hundreds of MiB over loopback")
	}
	slsa := policy.With{Attestations: []policy.Attestation{{PredicateType: imagetest.SLSAProvenanceV1}}}
	for _, tc := range []struct {
		name   string
		attack func(limits registry.Options) *memoryAttack
		with   policy.With
	}{
		{"signatures", func(o registry.Options) *memoryAttack { return signatureAttack(int(o.MaxSignatureBytes)) }, policy.With{}},
		{"attestations", func(o registry.Options) *memoryAttack {
			return attestationAttack(int(o.MaxSignatureBytes), int(o.MaxBlobBytes))
		}, slsa},
	} {
		t.Run(tc.name, func(t *testing.T) {
			limits := newClient(t, registry.Options{}).Limits()
			limits.Timeout = 2 * time.Second
			peak, budget, errs := heapPeak(t, tc.attack(limits), limits, tc.with, 16)
			for i, err := range errs {
				if err == nil {
					t.Fatalf("verification %d did not fail", i)
				}
			}
			t.Logf("defaults: heap in use peaked %d MiB above its start, body budget in use %d MiB; first error: %v", peak>>20, budget>>20, errs[0])
			if peak > 96<<20 {
				t.Fatalf("heap in use peaked %d MiB above its start, want < 96 MiB", peak>>20)
			}
			if os.Getenv("NIV_MEMATTACK_MAIN") != "" {
				old := mainLimits
				old.Timeout = limits.Timeout
				peak, budget, _ := heapPeak(t, tc.attack(old), old, tc.with, 16)
				t.Logf("main's limits: heap in use peaked %d MiB above its start, bodies being read %d MiB", peak>>20, budget>>20)
			}
		})
	}
}
