package plugin

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"

	"github.com/nri-image-verifier/nri-image-verifier/gate"
)

// fakeStore is an image store: names by target digest; volume folders in
// swapped were mounted from other layers.
type fakeStore struct {
	byDigest map[string][]Image
	err      error
	swapped  map[string]bool
}

func (f fakeStore) CheckVolume(_ context.Context, dir, _ string) error {
	if f.swapped[dir] {
		return errors.New("the image volume's file system was not made from the verified image")
	}
	return nil
}

func (f fakeStore) ImagesOf(_ context.Context, digest string) ([]Image, error) {
	return append([]Image(nil), f.byDigest[digest]...), f.err
}

// denyRepo denies images whose name contains bad, allows the rest.
func denyRepo(bad string) func(context.Context, gate.Input) gate.Decision {
	return func(_ context.Context, in gate.Input) gate.Decision {
		if strings.Contains(in.Image, bad) {
			return gate.Decision{Verdict: gate.VerdictDeny, Reason: "no cosign signature found", Image: in.Image, Rule: "127.0.0.1:5000/*"}
		}
		return gate.Decision{Allowed: true, Verdict: gate.VerdictAllow, Image: in.Image}
	}
}

const volDigest = "sha256:" + testHex

// volumeInputs are the inputs about image volumes: they are decided beside
// the container's own image, in no set order with it.
func volumeInputs(ins []gate.Input) []gate.Input {
	var out []gate.Input
	for _, in := range ins {
		if in.Volume != "" {
			out = append(out, in)
		}
	}
	return out
}

// withVolume is the test container with an image volume at /tools.
func withVolume(id string) *api.Container {
	ctr := testContainer(id)
	ctr.Mounts = []*api.Mount{
		{Destination: "/data", Source: "/var/lib/data", Type: "bind"},
		{Destination: "/tools", Source: volBase + testSandbox + "/" + testHex, Type: "bind", Options: []string{"rbind", "ro"}},
	}
	return ctr
}

// TestImageVolumeVerified is the bypass of issue 14: a signed image whose
// image volume is unsigned must be refused, naming the volume; on main the
// volume was never looked at and the container ran.
func TestImageVolumeVerified(t *testing.T) {
	store := fakeStore{byDigest: map[string][]Image{volDigest: {{Name: "127.0.0.1:5000/unsigned:v1", Digest: volDigest, ConfigDigest: testConfig}}}}
	dec, rep := &fakeDecider{fn: denyRepo("unsigned")}, &fakeReporter{}
	p, err := New(Config{Logger: testLogger(t), Images: store}, dec, rep)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = p.CreateContainer(t.Context(), testPod(), withVolume("c1"))
	if err == nil {
		t.Fatal("FAIL OPEN: container with an unsigned image volume allowed")
	}
	for _, want := range []string{"image volume /tools", "127.0.0.1:5000/unsigned:v1", volDigest, "no cosign signature found"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not say %q", err, want)
		}
	}
	inputs, _ := dec.calls()
	vin := volumeInputs(inputs)
	if len(inputs) != 2 || len(vin) != 1 || vin[0].Digest != volDigest || vin[0].Image != "127.0.0.1:5000/unsigned:v1" ||
		vin[0].ConfigDigest != testConfig || vin[0].Namespace != "shop" || vin[0].Container != "app" {
		t.Errorf("decided on %+v, want the container's image and the volume's", inputs)
	}
	if got := rep.reports(); len(got) != 2 || !got[0].Allowed || got[1].Allowed || rep.in[1].Volume != "/tools" {
		t.Errorf("reported %+v, want the image's allow, then the volume's deny", got)
	}
	// The validation request gets the same answer without deciding again.
	err2 := p.ValidateContainerAdjustment(t.Context(), &api.ValidateContainerAdjustmentRequest{Pod: testPod(), Container: withVolume("c1")})
	if err2 == nil || err2.Error() != err.Error() {
		t.Errorf("validation said %v, create said %v", err2, err)
	}
	if inputs, _ := dec.calls(); len(inputs) != 2 {
		t.Errorf("validation decided again: %d decisions", len(inputs))
	}

	// Signed volume: allowed.
	store.byDigest[volDigest][0].Name = "127.0.0.1:5000/signed-tools:v1"
	if _, _, err := p.CreateContainer(t.Context(), testPod(), withVolume("c2")); err != nil {
		t.Errorf("signed image volume refused: %v", err)
	}
}

// TestImageVolumeAnyName: a digest the store holds under several names is
// checked under the names' rules in a fixed order, and one allow allows:
// the content is the digest's, whatever the name. Requiring every name to
// pass (the previous commit) let a tenant deny another's volume by pulling
// a copy of it into its own repository, where it has no signature.
func TestImageVolumeAnyName(t *testing.T) {
	store := fakeStore{byDigest: map[string][]Image{volDigest: {
		{Name: "127.0.0.1:5000/zz-signed:v1", Digest: volDigest},
		{Name: "127.0.0.1:5000/aa-copy-unsigned:v1", Digest: volDigest},
		{Name: "127.0.0.1:5000/audited/tools:v1", Digest: volDigest},
	}}}
	dec := &fakeDecider{fn: func(_ context.Context, in gate.Input) gate.Decision {
		switch {
		case strings.Contains(in.Image, "unsigned"):
			return gate.Decision{Verdict: gate.VerdictDeny, Reason: "no signature", Image: in.Image}
		case strings.Contains(in.Image, "audited"):
			return gate.Decision{Allowed: true, Verdict: gate.VerdictAuditDeny, Reason: "no signature", Image: in.Image}
		}
		return gate.Decision{Allowed: true, Verdict: gate.VerdictAllow, Image: in.Image}
	}}
	rep := &fakeReporter{}
	p, err := New(Config{Logger: testLogger(t), Images: store}, dec, rep)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.CreateContainer(t.Context(), testPod(), withVolume("c1")); err != nil {
		t.Fatalf("a signed name among unsigned and audited copies: refused: %v", err)
	}
	inputs, _ := dec.calls()
	var names []string
	for _, in := range volumeInputs(inputs) {
		names = append(names, in.Image)
	}
	slices.Sort(names) // decided side by side
	if strings.Join(names, " ") != "127.0.0.1:5000/aa-copy-unsigned:v1 127.0.0.1:5000/audited/tools:v1 127.0.0.1:5000/zz-signed:v1" {
		t.Errorf("names decided %q, want each", names)
	}
	if got := rep.reports(); len(got) != 2 || got[1].Verdict != gate.VerdictAllow || rep.in[1].Image != "127.0.0.1:5000/zz-signed:v1" {
		t.Errorf("reports %+v of %+v, want the image's allow and the volume's, under its signed name", got, rep.in)
	}

	// No name allows, one audits: the audit-mode would-be refusal, so an
	// audit rollout sees it.
	store.byDigest[volDigest] = store.byDigest[volDigest][1:]
	if _, _, err := p.CreateContainer(t.Context(), testPod(), withVolume("c2")); err != nil {
		t.Fatalf("audited name: refused: %v", err)
	}
	if got := rep.reports(); got[len(got)-1].Verdict != gate.VerdictAuditDeny {
		t.Errorf("last report %+v, want the audit-deny", got[len(got)-1])
	}
	// No name allows: the first refusal.
	store.byDigest[volDigest] = store.byDigest[volDigest][:1]
	if _, _, err := p.CreateContainer(t.Context(), testPod(), withVolume("c3")); err == nil || !strings.Contains(err.Error(), "aa-copy-unsigned") {
		t.Errorf("only an unsigned name: %v, want a refusal naming it", err)
	}
}

// TestImageVolumeCannotBeNamed: without the image store, with a failing
// one, or with none of its names the volume's image cannot be matched to a
// rule, and the container is refused with a message saying why.
func TestImageVolumeCannotBeNamed(t *testing.T) {
	for name, tc := range map[string]struct {
		store ImageStore
		want  string
	}{
		"no image store": {nil, "set --containerd-socket (chart value containerdFallback.enabled=true)"},
		"store fails":    {fakeStore{err: errors.New("connection refused")}, "connection refused"},
		"no name":        {fakeStore{}, "holds no name for this digest"},
		"mounted from other layers": {fakeStore{byDigest: map[string][]Image{volDigest: {{Name: "127.0.0.1:5000/x:v1", Digest: volDigest}}},
			swapped: map[string]bool{volBase + testSandbox + "/" + testHex: true}}, "not made from the verified image"},
		"names disagree on the config": {fakeStore{byDigest: map[string][]Image{volDigest: {
			{Name: "127.0.0.1:5000/a:v1", Digest: volDigest, ConfigDigest: testConfig},
			{Name: "127.0.0.1:5000/b:v1", Digest: volDigest, ConfigDigest: testDigest}}}}, "not the volume's"},
		"record for another digest": {fakeStore{byDigest: map[string][]Image{volDigest: {{Name: "127.0.0.1:5000/x:v1", Digest: testDigest}}}},
			"not the volume's"},
	} {
		t.Run(name, func(t *testing.T) {
			dec, rep := &fakeDecider{fn: allow}, &fakeReporter{}
			p, err := New(Config{Logger: testLogger(t), Images: tc.store}, dec, rep)
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = p.CreateContainer(t.Context(), testPod(), withVolume("c1"))
			if err == nil || !strings.Contains(err.Error(), "image volume /tools") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("refusal %v, want one naming the volume and saying %q", err, tc.want)
			}
			if got := rep.reports(); len(got) != 2 || got[1].Allowed || got[1].Verdict != gate.VerdictDeny {
				t.Errorf("reported %+v, want the volume's deny last", got)
			}
		})
	}
}

// TestImageVolumeBadMount: a mount that looks like an image volume but does
// not parse refuses the container, whatever its image.
func TestImageVolumeBadMount(t *testing.T) {
	dec, rep := &fakeDecider{fn: allow}, &fakeReporter{}
	p, err := New(Config{Logger: testLogger(t), Images: fakeStore{}}, dec, rep)
	if err != nil {
		t.Fatal(err)
	}
	ctr := withVolume("c1")
	ctr.Mounts[1].Source = volBase + testSandbox + "/" + strings.ToUpper(testHex)
	_, _, err = p.CreateContainer(t.Context(), testPod(), ctr)
	if err == nil || !strings.Contains(err.Error(), "image volume /tools") || !strings.Contains(err.Error(), "64 lowercase hex") {
		t.Errorf("refusal %v, want one naming the mount and its fault", err)
	}
	// The same container with a well-formed volume is another request: it
	// is decided afresh, not answered from the memo.
	if _, _, err := p.CreateContainer(t.Context(), testPod(), withVolume("c1")); err == nil || !strings.Contains(err.Error(), "holds no name") {
		t.Errorf("second request %v, want a fresh decision", err)
	}
}

// TestImageVolumeDeadline: a volume whose verification outlasts the budget
// is a pending deny naming it, and the answer still comes within the
// budget plus the grace, whatever the number of volumes.
func TestImageVolumeDeadline(t *testing.T) {
	other := "sha256:" + strings.Repeat("4", 64)
	store := fakeStore{byDigest: map[string][]Image{
		volDigest: {{Name: "127.0.0.1:5000/slow:v1", Digest: volDigest}},
		other:     {{Name: "127.0.0.1:5000/slow-too:v1", Digest: other}},
	}}
	dec := &fakeDecider{fn: func(ctx context.Context, in gate.Input) gate.Decision {
		if in.Volume == "" {
			return allow(ctx, in)
		}
		<-ctx.Done() // a verifier that ignores its deadline until the end
		return gate.Decision{Verdict: gate.VerdictDeny, Pending: true, Reason: "still verifying"}
	}}
	rep := &fakeReporter{}
	cfg := Config{Logger: testLogger(t), Images: store, Timeout: 200 * time.Millisecond, Margin: 100 * time.Millisecond}
	p, err := New(cfg, dec, rep)
	if err != nil {
		t.Fatal(err)
	}
	ctr := withVolume("c1")
	ctr.Mounts = append(ctr.Mounts, &api.Mount{Destination: "/more", Source: volBase + testSandbox + "/" + strings.TrimPrefix(other, "sha256:")})
	start := time.Now()
	_, _, err = p.CreateContainer(t.Context(), testPod(), ctr)
	if took := time.Since(start); took > cfg.Timeout+cfg.Margin {
		t.Errorf("answered after %v, past the budget and its grace (%v)", took, cfg.Timeout+cfg.Margin)
	}
	if err == nil || !strings.Contains(err.Error(), "image volume /tools") || !strings.Contains(err.Error(), "verification still running") {
		t.Errorf("refusal %v, want a pending one naming /tools", err)
	}
}

// TestImageVolumeImageRefused: when the container's own image is refused,
// that is the answer; the volumes, decided beside it, are reported too.
func TestImageVolumeImageRefused(t *testing.T) {
	store := fakeStore{byDigest: map[string][]Image{volDigest: {{Name: "127.0.0.1:5000/unsigned-tools:v1", Digest: volDigest}}}}
	dec, rep := &fakeDecider{fn: denyRepo("unsigned")}, &fakeReporter{}
	p, err := New(Config{Logger: testLogger(t), Images: store}, dec, rep)
	if err != nil {
		t.Fatal(err)
	}
	ctr := withVolume("c1")
	ctr.Image.Name = "127.0.0.1:5000/unsigned-app:v1"
	_, _, err = p.CreateContainer(t.Context(), testPod(), ctr)
	if err == nil || strings.Contains(err.Error(), "image volume") || !strings.Contains(err.Error(), "unsigned-app") {
		t.Errorf("refusal %v, want the container image's", err)
	}
	if got := rep.reports(); len(got) != 2 || got[0].Allowed || got[1].Allowed || rep.in[1].Volume != "/tools" {
		t.Errorf("reports %+v, want the image's deny, then the volume's", got)
	}
}

func TestNewRejectsBadStateDir(t *testing.T) {
	for _, dir := range []string{"run/containerd", "/run/containerd/", "/run//containerd"} {
		if _, err := New(Config{CRIStateDir: dir}, &fakeDecider{fn: allow}, &fakeReporter{}); err == nil {
			t.Errorf("New accepted CRI state dir %q", dir)
		}
	}
}
