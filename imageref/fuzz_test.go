package imageref

import (
	"errors"
	"strings"
	"testing"
	"unicode"

	"github.com/google/go-containerregistry/pkg/name"
)

// FuzzNormalize: reference normalisation never panics, is idempotent,
// agrees with Repository, refuses image IDs, and only ever produces a
// reference that ggcr parses strictly, with a lower-case registry host
// written the canonical way and no control characters or spaces.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{
		"redis", "redis:7", "library/redis", "docker.io/redis", "index.docker.io/library/redis:7",
		"Registry.Example.COM:5000/team/app:v1", "localhost/app", "LOCALHOST:5000/app",
		"127.0.0.1:5000/app@" + testDigest, "reg.io/app:v1@" + testDigest,
		"[::1]:5000/app:v1", "reg.io/a/b/c/d:tag", "reg.io//app", "http://reg.io/app", "reg.io/App",
		testDigest, strings.TrimPrefix(testDigest, "sha256:"), "sha256:ABC", "app@sha512:" + strings.Repeat("a", 128),
		"a:b:c", "@", ":", "reg.io/app:" + strings.Repeat("t", 200), "reg.io/ap\u0131p", "reg.io/app\n:v1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, image string) {
		norm, err := Normalize(image)
		repo, rerr := Repository(image)
		if (err == nil) != (rerr == nil) {
			t.Fatalf("Normalize(%q) err %v but Repository err %v", image, err, rerr)
		}
		if IsImageID(image) {
			if !errors.Is(err, ErrImageID) {
				t.Fatalf("image ID %q: err %v, want ErrImageID", image, err)
			}
			return
		}
		if err != nil {
			return
		}
		if again, err := Normalize(norm); err != nil || again != norm {
			t.Fatalf("not idempotent: %q -> %q -> %q (%v)", image, norm, again, err)
		}
		if !strings.HasPrefix(norm, repo) || (len(norm) > len(repo) && !strings.ContainsRune(":@", rune(norm[len(repo)]))) {
			t.Fatalf("Normalize(%q) = %q does not start with its repository %q", image, norm, repo)
		}
		if r2, err := Repository(norm); err != nil || r2 != repo {
			t.Fatalf("Repository(Normalize(%q)) = %q, %v; want %q", image, r2, err, repo)
		}
		for _, c := range norm {
			if unicode.IsSpace(c) || unicode.IsControl(c) || c > unicode.MaxASCII {
				t.Fatalf("Normalize(%q) = %q holds %q", image, norm, c)
			}
		}
		host, _, _ := strings.Cut(repo, "/")
		if host != strings.ToLower(host) || host == "index.docker.io" || host == name.DefaultRegistry {
			t.Fatalf("Normalize(%q) = %q: registry %q not canonical", image, norm, host)
		}
		if _, err := name.NewRepository(repo, name.StrictValidation); err != nil {
			t.Fatalf("repository %q of %q does not parse strictly: %v", repo, image, err)
		}
		base, dgst, hasDigest := strings.Cut(norm, "@")
		if _, err := name.NewTag(base, name.StrictValidation); err != nil && !hasDigest {
			t.Fatalf("Normalize(%q) = %q does not parse strictly: %v", image, norm, err)
		}
		if hasDigest && !digestForm.MatchString(dgst) {
			t.Fatalf("Normalize(%q) = %q: digest %q", image, norm, dgst)
		}
	})
}

// FuzzGlob: the matcher agrees with a regular expression built from the
