package notaryv1

import (
	"encoding/hex"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
)

// FuzzParseDigest: only sha256 and sha512 digests of exactly the right
// length in lower-case hex are accepted, and what is accepted is exact.
func FuzzParseDigest(f *testing.F) {
	f.Add("sha256:" + strings.Repeat("ab", 32))
	f.Add("sha512:" + strings.Repeat("0", 128))
	f.Add("sha256:" + strings.Repeat("AB", 32))
	f.Add("sha384:" + strings.Repeat("0", 96))
	f.Add("sha256:")
	f.Add(":")
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseDigest(s)
		if err != nil {
			return
		}
		want := map[string]int{"sha256": 32, "sha512": 64}[d.algo]
		if want == 0 || len(d.sum) != want || d.str != s || s != d.algo+":"+hex.EncodeToString(d.sum) {
			t.Fatalf("parseDigest(%q) = %+v", s, d)
		}
	})
}

// FuzzGUN: a GUN is a strictly valid repository name of at most 255
// characters, Docker Hub's written docker.io, and stable.
func FuzzGUN(f *testing.F) {
	f.Add("docker.io/library/redis")
	f.Add("index.docker.io/library/redis")
	f.Add("127.0.0.1:5000/app")
	f.Add("reg.io/" + strings.Repeat("a/", 200) + "b")
	f.Add("Reg.io/App")
	f.Fuzz(func(t *testing.T, repo string) {
		gun, err := gunOf(repo)
		if err != nil {
			return
		}
		if len(gun) > 255 || strings.HasPrefix(gun, name.DefaultRegistry+"/") {
			t.Fatalf("gunOf(%q) = %q", repo, gun)
		}
		if _, err := name.NewRepository(gun, name.StrictValidation); err != nil {
			t.Fatalf("gunOf(%q) = %q is not a strict repository: %v", repo, gun, err)
		}
		if again, err := gunOf(gun); err != nil || again != gun {
			t.Fatalf("gunOf not stable: %q -> %q -> %q (%v)", repo, gun, again, err)
		}
	})
}
