package notaryv1

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/notarytest"
)

// TestHostileServer: whatever a notary server answers, the validator
// answers with a deny or an error, never an allow or a panic. The valid
// answers come from a real notary-server; each case spoils one file.
func TestHostileServer(t *testing.T) {
	w := newWorld(t)
	img := imagetest.PushImageConfig(t, w.reg+"/app:v1")
	repo := w.srv.NewRepo(t, w.reg+"/app", notarytest.ECDSA)
	repo.Sign("v1", img.Digest)
	real := proxyTo(t, w.srv)

	big := `{"signed": "` + strings.Repeat("a", 5<<20) + `"}`
	cases := []struct {
		name, file, body string
		status           int
		denied, err      string // what the reason or the error must say
	}{
		{"root not JSON", "root", "not json", 200, "failed TUF validation", ""},
		{"root empty object", "root", "{}", 200, "empty payload", ""},
		{"root without roles", "root", `{"signed":{"_type":"Root","version":1,"expires":"2100-01-01T00:00:00Z","keys":{},"roles":{}},"signatures":[]}`, 200, "failed TUF validation", ""},
		{"root null signed", "root", `{"signed":null,"signatures":null}`, 200, "failed TUF validation", ""},
		{"root huge", "root", big, 200, "exceeds 4194304 bytes", ""},
		{"timestamp not JSON", "timestamp", "[", 200, "failed TUF validation", ""},
		{"timestamp unsigned", "timestamp", `{"signed":{"_type":"Timestamp","version":99,"expires":"2100-01-01T00:00:00Z","meta":{}},"signatures":[]}`, 200, "failed TUF validation", ""},
		{"snapshot wrong bytes", "snapshot", `{"signed":{}}`, 200, "failed TUF validation", ""},
		{"targets wrong bytes", "targets", `{"signed":{},"signatures":[{"keyid":"x","method":"ecdsa","sig":"AA=="}]}`, 200, "failed TUF validation", ""},
		{"server error", "timestamp", "oops", 500, "", "answered 500"},
		{"forbidden", "root", "no", 403, "", "answered 403"},
		{"redirect", "root", "", 302, "", "answered 302"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			front := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
				base := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
				if base == tc.file+".json" || strings.HasPrefix(base, tc.file+".") {
					if tc.status == 302 {
						rw.Header().Set("Location", "http://127.0.0.1:1/elsewhere")
					}
					rw.WriteHeader(tc.status)
					io.WriteString(rw, tc.body)
					return
				}
				real.ServeHTTP(rw, r)
			}))
			defer front.Close()
			v, with := newValidator(t, front.URL, "", key{"default", repo.RootKeyPEM()})
			got, err := verifyOnce(newVerifier(t, v, Options{}), w.subject("app", img), with)
			switch {
			case got.Allowed:
				t.Fatalf("allowed: %s", got.Reason)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Errorf("got %q, %v; want an error with %q", got.Reason, err, tc.err)
			case tc.denied != "" && (err != nil || !strings.Contains(got.Reason, tc.denied)):
				t.Errorf("got %q, %v; want a deny with %q", got.Reason, err, tc.denied)
			}
			t.Logf("reason %q, error %v", got.Reason, err)
		})
	}
}
