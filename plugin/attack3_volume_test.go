package plugin

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"

	"github.com/nri-image-verifier/nri-image-verifier/gate"
	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/nri-image-verifier/nri-image-verifier/verify"
)

// attack3Policy: the victim's registry (5000) is verified by "sig", the
// attacker's (5001, a tarpit) by "sig" too.
const attack3Policy = `
validators:
- name: sig
  type: static
  approve: true
policy:
- pattern: "127.0.0.1:5000/*"
  validator: sig
- pattern: "127.0.0.1:5001/*"
  validator: sig
- pattern: "127.0.0.1:5002/*"
  validator: sig
`

// attack3Gate is a real gate and verdict cache whose "sig" validator
// allows 127.0.0.1:5000 after 10 ms and holds 127.0.0.1:5001 (the
// attacker's tarpit) until the verification times out.
func attack3Gate(t *testing.T) *gate.Gate {
	t.Helper()
	pol, err := policy.Parse([]byte(attack3Policy))
	if err != nil {
		t.Fatal(err)
	}
	build := func(v *policy.Validator) (verify.Verifier, error) {
		return verify.VerifierFunc(func(ctx context.Context, s verify.Subject, _ policy.With) (verify.Verdict, error) {
			if strings.HasPrefix(s.Repository, "127.0.0.1:5001/") {
				<-ctx.Done()
				return verify.Verdict{}, ctx.Err()
			}
			select {
			case <-time.After(10 * time.Millisecond):
			case <-ctx.Done():
				return verify.Verdict{}, ctx.Err()
			}
			return verify.Verdict{Allowed: true, Reason: "signed"}, nil
		}), nil
	}
	g, err := gate.New(pol, build, verify.NewCache(verify.CacheOptions{VerifyTimeout: 5 * time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// TestAttack3VolumeCopyTripsVictimNamespace: the attacker pulls the
// victim's volume image (same digest) from its own tarpit registry. When
// the victim's volume is decided with its signed name not yet cached (the
// first create after the verdict's hour, a restart, a policy reload), every
// name is decided side by side in the VICTIM's namespace: the tarpit copy
// starts a flight whose cost is [registry tarpit, namespace victim]; the
// signed name wins, decideNames cancels the rest, and the cancelled wait
// marks the tarpit flight overdue, which trips "namespace victim" until it
// ends. Every new image of the victim's namespace is then shed (pending
// deny) meanwhile; the attacker's own namespace is untouched.
func TestAttack3VolumeCopyTripsVictimNamespace(t *testing.T) {
	g := attack3Gate(t)
	store := fakeStore{byDigest: map[string][]Image{volDigest: {
		{Name: "127.0.0.1:5000/victim/tools:v1", Digest: volDigest, ConfigDigest: testConfig},
		{Name: "127.0.0.1:5001/attacker/copy:v1", Digest: volDigest, ConfigDigest: testConfig},
	}}}
	rep := &fakeReporter{}
	p, err := New(Config{Logger: testLogger(t), Images: store}, g, rep)
	if err != nil {
		t.Fatal(err)
	}
	// The container's own image is cached already (so only the volume is
	// at stake).
	g.Decide(t.Context(), gate.Input{Namespace: "shop", Image: "127.0.0.1:5000/app:v1", Digest: testDigest, ConfigDigest: testConfig})

	start := time.Now()
	_, _, err = p.CreateContainer(t.Context(), testPod(), withVolume("c1"))
	t.Logf("victim's volume create: err=%v after %s", err, time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatalf("the signed volume was refused: %v", err)
	}

	// A new, signed, fast image of a third registry, in the attacker's
	// namespace, then in the victim's (in this order: a shed flight trips
	// its registry too).
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	da := g.Decide(ctx, gate.Input{Namespace: "attacker", Image: "127.0.0.1:5002/attacker/next:v1", Digest: "sha256:" + strings.Repeat("4", 64), ConfigDigest: testConfig})
	cancel()
	ctx, cancel = context.WithTimeout(t.Context(), time.Second)
	d := g.Decide(ctx, gate.Input{Namespace: "shop", Image: "127.0.0.1:5002/victim/next:v1", Digest: "sha256:" + strings.Repeat("3", 64), ConfigDigest: testConfig})
	cancel()
	t.Logf("attacker's next image: allowed=%v pending=%v; victim's next image: allowed=%v pending=%v reason=%q", da.Allowed, da.Pending, d.Allowed, d.Pending, d.Reason)
	if !da.Allowed {
		t.Errorf("the attacker's own namespace was tripped too")
	}
	if !d.Allowed {
		// The losing names are abandoned (gate.ErrAbandoned), not overdue.
		t.Errorf("the attacker's tarpit copy of the victim's volume image tripped the VICTIM's namespace (stats %+v): its next signed image (another registry) is shed while the attacker's is not", g.Cache().Stats())
	}
}

// TestAttack3VolumeCopiesFillVictimQueue: 63 tarpit copies of each of two
// volume images of the victim (names sort after the signed one or not, it
// does not matter): every copy is a flight charged to the victim's
// namespace, so its per-group flight cap (64) is taken and its next new
// image is refused busy; its slots (4 per group) are held by the tarpit.
func TestAttack3VolumeCopiesFillVictimQueue(t *testing.T) {
	g := attack3Gate(t)
	vol2 := "sha256:" + strings.Repeat("5", 64)
	by := map[string][]Image{}
	for _, dg := range []string{volDigest, vol2} {
		by[dg] = []Image{{Name: "127.0.0.1:5000/victim/tools" + dg[7:9] + ":v1", Digest: dg, ConfigDigest: testConfig}}
		for i := range 63 {
			by[dg] = append(by[dg], Image{Name: fmt.Sprintf("127.0.0.1:5001/attacker/copy%s-%02d:v1", dg[7:9], i), Digest: dg, ConfigDigest: testConfig})
		}
	}
	store := fakeStore{byDigest: by}
	p, err := New(Config{Logger: testLogger(t), Images: store}, g, &fakeReporter{})
	if err != nil {
		t.Fatal(err)
	}
	g.Decide(t.Context(), gate.Input{Namespace: "shop", Image: "127.0.0.1:5000/app:v1", Digest: testDigest, ConfigDigest: testConfig})
	ctr := withVolume("c1")
	ctr.Mounts = append(ctr.Mounts, &api.Mount{Destination: "/tools2", Source: volBase + testSandbox + "/" + vol2[7:], Type: "bind", Options: []string{"rbind", "ro"}})
	_, _, err = p.CreateContainer(t.Context(), testPod(), ctr)
	t.Logf("victim's create with two volumes: %v (stats %+v)", err, g.Cache().Stats())

	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	d := g.Decide(ctx, gate.Input{Namespace: "shop", Image: "127.0.0.1:5000/victim/next:v1", Digest: "sha256:" + strings.Repeat("3", 64), ConfigDigest: testConfig})
	cancel()
	t.Logf("victim's next image: allowed=%v pending=%v reason=%q", d.Allowed, d.Pending, d.Reason)
	if err != nil || !d.Allowed {
		t.Logf("HOLE (a residual in the threat model): 126 tarpit copies (two pulls of 63 names each by the attacker) refuse the victim's create or its next image")
	}
	// What must hold even so: the victim is refused only as "try again"
	// (still running, too busy, a copy's registry error), never denied as
	// unsigned.
	if err != nil && !strings.Contains(err.Error(), "verification still running") && !strings.Contains(err.Error(), "too many verifications") &&
		!strings.Contains(err.Error(), "verification failed") {
		t.Errorf("the victim's create was refused for another reason than a transient one: %v", err)
	}
	if !d.Allowed && !d.Pending && !strings.Contains(d.Reason, "too many verifications") {
		t.Errorf("the victim's next image was denied for another reason than a transient one: %s", d.Reason)
	}
}

const attack3RulesPolicy = `
validators:
- name: sig
  type: static
  approve: true
- name: deny
  type: static
  approve: false
policy:
- pattern: "127.0.0.1:5000/*"
  validator: deny
- pattern: "127.0.0.1:5000/other-ns-allowed/*"
  validator: sig
  namespaces: [tenant-b]
- pattern: "127.0.0.1:5000/other-ns-audit/*"
  validator: deny
  mode: audit
  namespaces: [tenant-b]
- pattern: "127.0.0.1:5001/*"
  validator: sig
- pattern: "127.0.0.1:5001/audited/*"
  validator: sig
  mode: audit
`

// TestAttack3VolumeNamesRulesAndModes: an unsigned digest held under names
// whose rules allow or audit it only in another namespace is refused; a
// pending (tarpit) name or a refused one never wins; a pending name under
// an audit-mode rule is an audit-mode allow, as a container of that name
// gets. What the volume gets, the pod could get by naming the image as a
// container under the same name.
func TestAttack3VolumeNamesRulesAndModes(t *testing.T) {
	pol, err := policy.Parse([]byte(attack3RulesPolicy))
	if err != nil {
		t.Fatal(err)
	}
	build := func(v *policy.Validator) (verify.Verifier, error) {
		approve := *v.Approve
		return verify.VerifierFunc(func(ctx context.Context, s verify.Subject, _ policy.With) (verify.Verdict, error) {
			if strings.HasPrefix(s.Repository, "127.0.0.1:5001/") {
				<-ctx.Done() // a tarpit
				return verify.Verdict{}, ctx.Err()
			}
			return verify.Verdict{Allowed: approve, Reason: "static"}, nil
		}), nil
	}
	for _, tc := range []struct {
		name  string
		names []string
		want  gate.Verdict // "" for refused
	}{
		{"allowed and audited only in another namespace", []string{"127.0.0.1:5000/other-ns-allowed/x:v1", "127.0.0.1:5000/other-ns-audit/x:v1"}, ""},
		{"refused and pending", []string{"127.0.0.1:5000/unsigned:v1", "127.0.0.1:5001/tarpit:v1"}, ""},
		{"pending under an audit-mode rule", []string{"127.0.0.1:5000/unsigned:v1", "127.0.0.1:5001/audited/x:v1"}, gate.VerdictAuditDeny},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, err := gate.New(pol, build, verify.NewCache(verify.CacheOptions{VerifyTimeout: 2 * time.Second}))
			if err != nil {
				t.Fatal(err)
			}
			var imgs []Image
			for _, n := range tc.names {
				imgs = append(imgs, Image{Name: n, Digest: volDigest, ConfigDigest: testConfig})
			}
			rep := &fakeReporter{}
			p, err := New(Config{Logger: testLogger(t), Images: fakeStore{byDigest: map[string][]Image{volDigest: imgs}}}, g, rep)
			if err != nil {
				t.Fatal(err)
			}
			// The container's own image: allowed in shop? No rule allows
			// 5000 but the two namespace-limited; use a tarpit-free audited name.
			ctr := withVolume("c1")
			ctr.Image = &api.Image{Name: "127.0.0.1:5001/audited/app:v1", Digest: testDigest, ConfigDigest: testConfig}
			ctr.Annotations[imageNameAnnotation] = ctr.Image.Name
			_, _, err = p.CreateContainer(t.Context(), testPod(), ctr)
			var vol *gate.Decision
			for i, in := range rep.in {
				if in.Volume != "" {
					vol = &rep.reports()[i]
				}
			}
			switch {
			case vol == nil:
				t.Fatalf("no volume decision reported (err %v)", err)
			case tc.want == "" && vol.Allowed:
				t.Errorf("FAIL OPEN: volume allowed (%+v)", *vol)
			case tc.want != "" && (!vol.Allowed || vol.Verdict != tc.want):
				t.Errorf("volume %+v, want %s", *vol, tc.want)
			}
			t.Logf("volume: allowed=%v verdict=%s pending=%v image=%s reason=%q", vol.Allowed, vol.Verdict, vol.Pending, vol.Image, vol.Reason)
		})
	}
}

// TestAttack3VolumeCopiesStarveSignedName: one volume, 63 tarpit copies
// (63 digest pulls into the attacker's repositories on its own registry
// hosts). Every name is looked up in the victim's namespace, whose 4
// slots the copies take: the signed name waits in the queue behind them
// and times out with them; the copies' errors are cached for less than a
// verification lasts, so each retry starts them again. The victim's
// kubelet retries (here every 250 ms, for 12 s, verify timeout 2 s, error
// TTL 0.5 s).
func TestAttack3VolumeCopiesStarveSignedName(t *testing.T) {
	for _, nvol := range []int{1, 2} {
		t.Run(fmt.Sprintf("%d volumes", nvol), func(t *testing.T) { starveSignedName(t, nvol) })
	}
}

func starveSignedName(t *testing.T, nvol int) {
	pol, err := policy.Parse([]byte(attack3Policy))
	if err != nil {
		t.Fatal(err)
	}
	build := func(v *policy.Validator) (verify.Verifier, error) {
		return verify.VerifierFunc(func(ctx context.Context, s verify.Subject, _ policy.With) (verify.Verdict, error) {
			if strings.HasPrefix(s.Repository, "127.0.0.1:5001/") {
				<-ctx.Done()
				return verify.Verdict{}, ctx.Err()
			}
			return verify.Verdict{Allowed: true, Reason: "signed"}, nil
		}), nil
	}
	g, err := gate.New(pol, build, verify.NewCache(verify.CacheOptions{VerifyTimeout: 2 * time.Second, ErrorTTL: 500 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	// The victim's registry sorts after the attacker's (its names' goroutines
	// start first, in sorted order).
	by := map[string][]Image{}
	digests := []string{volDigest, "sha256:" + strings.Repeat("5", 64)}[:nvol]
	for v, dg := range digests {
		by[dg] = []Image{{Name: fmt.Sprintf("127.0.0.1:5002/victim/tools%d:v1", v), Digest: dg, ConfigDigest: testConfig}}
		for i := range 63 {
			by[dg] = append(by[dg], Image{Name: fmt.Sprintf("127.0.0.1:5001/attacker/v%d-copy%02d@%s", v, i, dg), Digest: dg, ConfigDigest: testConfig})
		}
	}
	p, err := New(Config{Logger: testLogger(t), Images: fakeStore{byDigest: by}}, g, &fakeReporter{})
	if err != nil {
		t.Fatal(err)
	}
	g.Decide(t.Context(), gate.Input{Namespace: "shop", Image: "127.0.0.1:5000/app:v1", Digest: testDigest, ConfigDigest: testConfig})
	start := time.Now()
	for i := 1; ; i++ {
		ctr := withVolume(fmt.Sprintf("c%d", i))
		if nvol == 2 {
			ctr.Mounts = append(ctr.Mounts, &api.Mount{Destination: "/tools2", Source: volBase + testSandbox + "/" + digests[1][7:], Type: "bind", Options: []string{"rbind", "ro"}})
		}
		_, _, err := p.CreateContainer(t.Context(), testPod(), ctr)
		if err == nil {
			t.Logf("the victim's volume allowed on try %d after %v", i, time.Since(start).Round(time.Millisecond))
			if i > 1 {
				t.Logf("HOLE (DoS): 63 tarpit copies held the victim's signed volume for %v (%d tries)", time.Since(start).Round(time.Millisecond), i)
			}
			return
		}
		if i == 1 || i%10 == 0 {
			t.Logf("try %d (%v): %v", i, time.Since(start).Round(time.Millisecond), err)
		}
		if time.Since(start) > 12*time.Second {
			t.Logf("HOLE (DoS): 63 tarpit copies keep the victim's signed volume refused: %d tries over %v (6 verify timeouts)", i, time.Since(start).Round(time.Millisecond))
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
}
