package registry

import (
	"context"
	"encoding/base64"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
)

// A registry behind basic auth is read with credentials from a docker
// config.json.
func TestDockerConfigKeychain(t *testing.T) {
	var locked atomic.Bool // pushing the fixture needs no credentials
	srv := imagetest.StartRegistryServer(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u, p, ok := r.BasicAuth(); locked.Load() && (!ok || u != "puller" || p != "s3cret") {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				http.Error(w, `{"errors":[{"code":"UNAUTHORIZED"}]}`, http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	host := strings.TrimPrefix(srv.URL, "http://")
	repo := mustRepo(t, host+"/app")
	d := imagetest.PushImage(t, repo.String()+":v1")
	locked.Store(true)

	cfg := filepath.Join(t.TempDir(), "config.json")
	auth := base64.StdEncoding.EncodeToString([]byte("puller:s3cret"))
	if err := os.WriteFile(cfg, []byte(`{"auths":{"`+host+`":{"auth":"`+auth+`"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	kc, err := DockerConfigKeychain(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newClient(t, Options{Keychain: kc}).Manifest(context.Background(), repo.Digest(d)); err != nil {
		t.Fatalf("with credentials: %v", err)
	}

	empty := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(empty, []byte(`{}`), 0o600); err != nil {
		t.Fatal(err)
	}
	anon, err := DockerConfigKeychain(empty)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newClient(t, Options{Keychain: anon}).Manifest(context.Background(), repo.Digest(d)); err == nil {
		t.Fatal("read without credentials")
	}

	if _, err := DockerConfigKeychain(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Fatal("a missing config file was accepted")
	}
}
