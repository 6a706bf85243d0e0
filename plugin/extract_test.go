package plugin

import (
	"testing"

	"github.com/containerd/nri/pkg/api"

	"github.com/nri-image-verifier/nri-image-verifier/gate"
)

const (
	testDigest = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	testConfig = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
)

func testPod() *api.PodSandbox {
	return &api.PodSandbox{Id: "pod-id", Name: "web", Uid: "uid-1", Namespace: "shop"}
}

func TestIdentity(t *testing.T) {
	pod := testPod()
	for _, tc := range []struct {
		name string
		ctr  *api.Container
		want gate.Input
	}{{
		name: "runtime sends the image",
		ctr: &api.Container{Id: "c1", Name: "app",
			Image:       &api.Image{Name: "127.0.0.1:5000/app:v1", Digest: testDigest, ConfigDigest: testConfig},
			Annotations: map[string]string{imageNameAnnotation: "evil.example/other:v1"}},
		want: gate.Input{Image: "127.0.0.1:5000/app:v1", Digest: testDigest, ConfigDigest: testConfig, Requested: "evil.example/other:v1",
			Namespace: "shop", Pod: "web", PodUID: "uid-1", Container: "app", ContainerID: "c1"},
	}, {
		name: "older runtime: no image, name from the annotation, no digest",
		ctr: &api.Container{Id: "c1", Name: "app",
			Annotations: map[string]string{imageNameAnnotation: "docker.io/library/redis:7"}},
		want: gate.Input{Image: "docker.io/library/redis:7",
			Namespace: "shop", Pod: "web", PodUID: "uid-1", Container: "app", ContainerID: "c1"},
	}, {
		name: "image without digest keeps the runtime's name",
		ctr: &api.Container{Id: "c1", Name: "app", Image: &api.Image{Name: "docker.io/library/redis:7"},
			Annotations: map[string]string{imageNameAnnotation: "redis"}},
		want: gate.Input{Image: "docker.io/library/redis:7", Requested: "redis",
			Namespace: "shop", Pod: "web", PodUID: "uid-1", Container: "app", ContainerID: "c1"},
	}, {
		name: "nothing known",
		ctr:  &api.Container{Id: "c1", Name: "app"},
		want: gate.Input{Namespace: "shop", Pod: "web", PodUID: "uid-1", Container: "app", ContainerID: "c1"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Identity(pod, tc.ctr); got != tc.want {
				t.Errorf("Identity:\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}

	if got := Identity(nil, nil); got != (gate.Input{}) {
		t.Errorf("Identity(nil, nil) = %+v, want zero", got)
	}
}

// FuzzIdentity checks that the digests only ever come from Container.Image
// and that the annotation is used only when the runtime sent no name.
func FuzzIdentity(f *testing.F) {
	f.Add("ns", "pod", "uid", "ctr", "127.0.0.1:5000/app:v1", testDigest, testConfig, "annotated:v1", true)
	f.Add("", "", "", "", "", "", "", "sha256:abc", false)
	f.Add("a", "b", "c", "d", "", testDigest, "", "x\ny", true)
	f.Fuzz(func(t *testing.T, ns, name, uid, cname, image, digest, config, annotation string, withImage bool) {
		pod := &api.PodSandbox{Namespace: ns, Name: name, Uid: uid}
		ctr := &api.Container{Name: cname, Annotations: map[string]string{imageNameAnnotation: annotation}}
		if withImage {
			ctr.Image = &api.Image{Name: image, Digest: digest, ConfigDigest: config}
		} else {
			image, digest, config = "", "", ""
		}
		in := Identity(pod, ctr)

		if in.Namespace != ns || in.Pod != name || in.PodUID != uid || in.Container != cname {
			t.Fatalf("pod fields: %+v", in)
		}
		if in.Digest != digest || in.ConfigDigest != config {
			t.Fatalf("digests %q %q not taken from Container.Image (%q %q)", in.Digest, in.ConfigDigest, digest, config)
		}
		want := image
		if want == "" {
			want = annotation
		}
		if in.Image != want {
			t.Fatalf("Image = %q, want %q", in.Image, want)
		}
	})
}
