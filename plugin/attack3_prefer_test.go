package plugin

import (
	"context"
	"strings"
	"testing"

	"github.com/containerd/nri/pkg/api"

	"github.com/nri-image-verifier/nri-image-verifier/gate"
)

// byNameResolver answers Lookup from a fixed table of records.
type byNameResolver map[string]Image

func (r byNameResolver) Resolve(context.Context, string, string) (Image, error) {
	return Image{}, nil
}

func (r byNameResolver) Lookup(_ context.Context, ref string) (Image, error) {
	return r[ref], nil
}

// TestAttack3PreferMemoNotPoisoned: the attacker creates, first and in its
// own namespace, containers that name the victim's image string while the
// runtime sends (a) the look-alike's digests (the same config) and (b) its
// own unsigned image's digests (another config). Neither changes what the
// victim's create is decided under: the memo's key holds the runtime's
// digests and its value depends on the image store alone.
func TestAttack3PreferMemoNotPoisoned(t *testing.T) {
	const (
		victimReq    = "127.0.0.1:5000/victim/app:v1"
		victimDigest = "sha256:3333333333333333333333333333333333333333333333333333333333333333"
		lookDigest   = "sha256:4444444444444444444444444444444444444444444444444444444444444444"
		attDigest    = "sha256:5555555555555555555555555555555555555555555555555555555555555555"
		attConfig    = "sha256:6666666666666666666666666666666666666666666666666666666666666666"
	)
	res := byNameResolver{victimReq: {Name: victimReq, Digest: victimDigest, ConfigDigest: testConfig}}
	dec := &fakeDecider{fn: func(_ context.Context, in gate.Input) gate.Decision {
		if strings.Contains(in.Image, "victim") && in.Digest == victimDigest {
			return gate.Decision{Allowed: true, Verdict: gate.VerdictAllow, Image: in.Image}
		}
		return gate.Decision{Verdict: gate.VerdictDeny, Reason: "no signature", Image: in.Image}
	}}
	p, err := New(Config{Logger: testLogger(t), Resolver: res}, dec, &fakeReporter{})
	if err != nil {
		t.Fatal(err)
	}
	ctr := func(id, runtimeName, digest, config string) *api.Container {
		c := testContainer(id)
		c.Image = &api.Image{Name: runtimeName, Digest: digest, ConfigDigest: config}
		c.Annotations[imageNameAnnotation] = victimReq
		return c
	}
	attacker := &api.PodSandbox{Id: "pod-a", Name: "a", Uid: "uid-a", Namespace: "attacker"}
	// (b) The attacker's unsigned image under the victim's string: refused,
	// and remembered under the attacker's digests only.
	if _, _, err := p.CreateContainer(t.Context(), attacker, ctr("a1", "127.0.0.1:5000/0-attacker/x:v1", attDigest, attConfig)); err == nil {
		t.Errorf("FAIL OPEN: the attacker's unsigned image, named by the victim's string, allowed")
	}
	// (a) The look-alike: decided as the victim's record (same config).
	_, _, _ = p.CreateContainer(t.Context(), attacker, ctr("a2", "127.0.0.1:5000/0-look-alike/app:v1", lookDigest, testConfig))
	// The victim, whose runtime names the look-alike (it sorts first).
	if _, _, err := p.CreateContainer(t.Context(), testPod(), ctr("v1", "127.0.0.1:5000/0-look-alike/app:v1", lookDigest, testConfig)); err != nil {
		t.Errorf("victim refused after the attacker's creates: %v", err)
	}
	ins, _ := dec.calls()
	for _, in := range ins {
		t.Logf("decided %s/%s under %s (%s)", in.Namespace, in.ContainerID, in.Image, in.Digest)
	}
}
