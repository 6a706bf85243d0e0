package imageref

import (
	"errors"
	"strings"
	"testing"
)

func TestNormalize(t *testing.T) {
	d := testDigest
	tests := []struct{ in, want string }{
		{"redis", "docker.io/library/redis:latest"},
		{"redis:7", "docker.io/library/redis:7"},
		{"library/redis:7", "docker.io/library/redis:7"},
		{"docker.io/redis:7", "docker.io/library/redis:7"},
		{"docker.io/library/redis:7", "docker.io/library/redis:7"},
		{"index.docker.io/library/redis", "docker.io/library/redis:latest"},
		{"Docker.IO/library/redis:7", "docker.io/library/redis:7"},
		{"myorg/app:v1", "docker.io/myorg/app:v1"},
		{"ghcr.io/x/y:1", "ghcr.io/x/y:1"},
		{"GHCR.io/x/y:Tag", "ghcr.io/x/y:Tag"},
		{"localhost/app", "localhost/app:latest"},
		{"localhost:5000/app", "localhost:5000/app:latest"},
		{"127.0.0.1:5000/app:v1", "127.0.0.1:5000/app:v1"},
		{"redis@" + d, "docker.io/library/redis@" + d},
		{"redis:7@" + d, "docker.io/library/redis:7@" + d},
		{"reg.io:5000/a/b/c:tag@" + d, "reg.io:5000/a/b/c:tag@" + d},
	}
	for _, tt := range tests {
		got, err := Normalize(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("Normalize(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestNormalizeErrors(t *testing.T) {
	hex := strings.TrimPrefix(testDigest, "sha256:")
	tests := []struct {
		in     string
		imgID  bool
		inText string
	}{
		{in: ""},
		{in: testDigest, imgID: true},
		{in: hex, imgID: true},
		{in: "sha256:" + strings.ToUpper(hex), imgID: true},
		{in: "Redis"},
		{in: "redis:"},
		{in: "redis@sha256:abc"},
		{in: "a@" + testDigest + "@" + testDigest},
		{in: "http://reg.io/app"},
		{in: "redis 7"},
	}
	for _, tt := range tests {
		got, err := Normalize(tt.in)
		if err == nil {
			t.Errorf("Normalize(%q) = %q, want an error", tt.in, got)
			continue
		}
		if errors.Is(err, ErrImageID) != tt.imgID {
			t.Errorf("Normalize(%q): errors.Is(ErrImageID) = %v, want %v (%v)", tt.in, !tt.imgID, tt.imgID, err)
		}
		if !strings.Contains(err.Error(), tt.in) {
			t.Errorf("Normalize(%q): error %q does not name the input", tt.in, err)
		}
	}
}

func TestRepository(t *testing.T) {
	tests := []struct{ in, want string }{
		{"redis", "docker.io/library/redis"},
		{"redis:7@" + testDigest, "docker.io/library/redis"},
		{"localhost:5000/a/b@" + testDigest, "localhost:5000/a/b"},
	}
	for _, tt := range tests {
		got, err := Repository(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("Repository(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	if _, err := Repository(testDigest); !errors.Is(err, ErrImageID) {
		t.Errorf("Repository(image ID) error = %v, want ErrImageID", err)
	}
}

func TestIsImageID(t *testing.T) {
	hex := strings.TrimPrefix(testDigest, "sha256:")
	for s, want := range map[string]bool{
		testDigest: true, hex: true, "sha256:": false, hex[:63]: false,
		"redis": false, "sha256:xyz": false, "docker.io/library/redis@" + testDigest: false,
	} {
		if got := IsImageID(s); got != want {
			t.Errorf("IsImageID(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestNormalizeOddHosts(t *testing.T) {
	for _, in := range []string{"foo:/app", "reg.io//app", "reg.io/app/", "-reg.io/app", "reg.io/./app"} {
		if got, err := Normalize(in); err == nil {
			t.Errorf("Normalize(%q) = %q, want an error", in, got)
		}
	}
	if got, err := Normalize("[::1]:5000/app"); err != nil || got != "[::1]:5000/app:latest" {
		t.Errorf("Normalize(IPv6) = %q, %v", got, err)
	}
}

const testDigest = "sha256:1388abc7a12532836c3a81bdb0087409b15208f5aeba7a87aedcfd56d637c145"

func TestContainerdName(t *testing.T) {
	d := testDigest
	for _, tt := range []struct{ in, want string }{
		{"redis", "docker.io/library/redis:latest"},
		{"redis:7", "docker.io/library/redis:7"},
		{"EVIL.io/x:1", "EVIL.io/x:1"}, // the host's case is kept, as containerd keeps it
		{"evil.io/x:1", "evil.io/x:1"},
		{"reg.io/app:v1@" + d, "reg.io/app@" + d}, // containerd drops the tag
		{"127.0.0.1:5000/app@" + d, "127.0.0.1:5000/app@" + d},
	} {
		if got, err := ContainerdName(tt.in); err != nil || got != tt.want {
			t.Errorf("ContainerdName(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{testDigest, "Not A Ref!", "reg.io/App:1"} {
		if got, err := ContainerdName(bad); err == nil {
			t.Errorf("ContainerdName(%q) = %q, want an error", bad, got)
		}
	}
}
