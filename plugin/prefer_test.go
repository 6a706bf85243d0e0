package plugin

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
)

// recordResolver answers for one requested name with a record of config
// cfg, and counts its calls.
type recordResolver struct {
	name, digest, cfg string
	calls             atomic.Int32
}

func (r *recordResolver) Resolve(context.Context, string, string) (Image, error) {
	return Image{}, errors.New("prefer must not bind: the runtime's config is the binding")
}

func (r *recordResolver) Lookup(context.Context, string) (Image, error) {
	r.calls.Add(1)
	return Image{Name: r.name, Digest: r.digest, ConfigDigest: r.cfg}, nil
}

// containerd >= 2.4 names the image by the first record sharing its ID; a
// look-alike pulled by another tenant under a name that sorts first would
// be checked in the victim's stead. The record the pod asked for wins when
// it leads to the same config, and only then. On the previous commit every
// case decided on the runtime's name.
func TestPreferRequestedRecord(t *testing.T) {
	const victimDigest = "sha256:" + "3333333333333333333333333333333333333333333333333333333333333333"
	for _, tc := range []struct {
		name, requested, cfg  string
		wantImage, wantDigest string
		wantCalls             int32
	}{
		{"look-alike sorts first: the requested record, same config", "127.0.0.1:5000/victim/app:v1", testConfig,
			"127.0.0.1:5000/victim/app:v1", victimDigest, 1},
		{"requested record of another config: the runtime's", "127.0.0.1:5000/victim/app:v1", "sha256:" + strings.Repeat("9", 64),
			"127.0.0.1:5000/app:v1", testDigest, 1},
		{"the same name spelled otherwise: no lookup", "127.0.0.1:5000/app:v1", testConfig,
			"127.0.0.1:5000/app:v1", testDigest, 0},
		{"pinned to the runtime's digest: no lookup", "127.0.0.1:5000/app@" + testDigest, testConfig,
			"127.0.0.1:5000/app:v1", testDigest, 0},
		{"by image ID: no lookup", testConfig, testConfig,
			"127.0.0.1:5000/app:v1", testDigest, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := &recordResolver{name: tc.requested, digest: victimDigest, cfg: tc.cfg}
			dec, rep := &fakeDecider{fn: allow}, &fakeReporter{}
			p, err := New(Config{Logger: testLogger(t), Resolver: res}, dec, rep)
			if err != nil {
				t.Fatal(err)
			}
			ctr := testContainer("c1")
			ctr.Annotations[imageNameAnnotation] = tc.requested
			if _, _, err := p.CreateContainer(t.Context(), testPod(), ctr); err != nil {
				t.Fatal(err)
			}
			ins, _ := dec.calls()
			if len(ins) == 0 {
				t.Fatal("never decided")
			}
			last := ins[len(ins)-1]
			if last.Image != tc.wantImage || last.Digest != tc.wantDigest {
				t.Errorf("decided on %s (%s), want %s (%s)", last.Image, last.Digest, tc.wantImage, tc.wantDigest)
			}
			if got := res.calls.Load(); got != tc.wantCalls {
				t.Errorf("resolver called %d times, want %d", got, tc.wantCalls)
			}
			// The choice is remembered: the next create of the image asks
			// the image store nothing and decides the same.
			if _, _, err := p.CreateContainer(t.Context(), testPod(), ctr); err != nil {
				t.Fatal(err)
			}
			ins, _ = dec.calls()
			if last := ins[len(ins)-1]; last.Image != tc.wantImage || last.Digest != tc.wantDigest || res.calls.Load() != tc.wantCalls {
				t.Errorf("second create: decided on %s (%s) after %d lookups, want %s (%s) after %d", last.Image, last.Digest, res.calls.Load(), tc.wantImage, tc.wantDigest, tc.wantCalls)
			}
		})
	}
}
