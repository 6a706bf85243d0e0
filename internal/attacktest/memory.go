package attacktest

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/nri-image-verifier/nri-image-verifier/internal/faulttest"
)

const ociManifestType = "application/vnd.oci.image.manifest.v1+json"

// HostileLists are a memory attack as fault proxy rules: a .sig
// manifest and a referrer list just under sigCap, each naming 32 entries;
// every payload blob sends sigCap-1 bytes and every manifest fetched by
// digest (the image's own, and the referrers') manifestCap-1, and then
// they stall until the daemon gives up.
func HostileLists(sigCap, manifestCap int) []faulttest.Rule {
	entries := func(mediaType, extra string) string {
		items := make([]string, 32)
		for i := range items {
			items[i] = fmt.Sprintf(`{"mediaType":%q,"digest":"sha256:%064x","size":1%s}`, mediaType, i+1, extra)
		}
		return strings.Join(items, ",")
	}
	pad := func(s string) []byte {
		return []byte(strings.Replace(s, "PAD", strings.Repeat("x", max(0, sigCap-512-len(s))), 1))
	}
	sig := pad(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",` +
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:` + strings.Repeat("0", 64) + `","size":2},` +
		`"layers":[` + entries("application/vnd.dev.cosign.simplesigning.v1+json", `,"annotations":{"dev.cosignproject.cosign/signature":"AAAA"}`) +
		`],"annotations":{"pad":"PAD"}}`)
	refs := pad(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[` +
		entries(ociManifestType, `,"artifactType":"application/vnd.dev.sigstore.bundle.v0.3+json"`) + `],"annotations":{"pad":"PAD"}}`)
	return []faulttest.Rule{
		{Kinds: []faulttest.Kind{faulttest.KindSigTag}, Fault: faulttest.Body(ociManifestType, sig)},
		{Kinds: []faulttest.Kind{faulttest.KindReferrers}, Fault: faulttest.Body("application/vnd.oci.image.index.v1+json", refs)},
		{Kinds: []faulttest.Kind{faulttest.KindBlob}, Fault: StallAfter(sigCap - 1)},
		{Kinds: []faulttest.Kind{faulttest.KindManifest}, Fault: StallAfter(manifestCap - 1)},
	}
}

var stallFiller = []byte(strings.Repeat(" ", 4<<20))

// StallAfter sends n bytes of a 200 answer and waits for the client to
// hang up.
func StallAfter(n int) faulttest.Fault {
	return func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(stallFiller[:n])
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		<-r.Context().Done()
	}
}
