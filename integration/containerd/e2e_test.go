package containerd

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nri-image-verifier/nri-image-verifier/internal/containerdtest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
)

// TestContainerd drives a real containerd v2.4 (which sends the image's
// name and digests through NRI) through CRI as kubelet does, with
// nri-image-verifier as the NRI plugin the default validator requires.
// The subtests share one world and run in order: the last ones kill,
// freeze and restart the plugin, then restart containerd. One case joins
// a real kube-apiserver, started meanwhile, to check the Events.
func TestContainerd(t *testing.T) {
	needRoot(t)
	kube := startKube(t)
	w := newWorld(t, v24)
	// Pulls are not gated: the check is at creation. All images are in
	// containerd's store before any container is made of them.
	w.pull(t, w.signed, w.bundled, w.unsigned, w.audited)

	w.coreCases(t)
	w.byIDCases(t)
	t.Run("signed as a cosign v3 bundle: allowed and runs", func(t *testing.T) {
		w.expectRuns(t, "bundled-tag", w.bundled.Ref, w.bundled, "allow")
	})
	t.Run("unsigned in audit mode: allowed and runs, audited as audit-deny", func(t *testing.T) {
		w.expectRuns(t, "audited-tag", w.audited.Ref, w.audited, "audit-deny")
	})
	t.Run("unsigned by ID, user-specified image naming a signed tag: refused", func(t *testing.T) {
		// containerd >= 2.4 names the image from its own record of what it
		// makes the rootfs from, not from what the client says.
		w.expectDeniedOf(t, "user-specified", &cri.ImageSpec{Image: w.unsigned.ConfigDigest, UserSpecifiedImage: w.signed.Ref},
			w.unsigned, noSignature)
	})

	t.Run("a look-alike named first", w.lookAlikeCases)
	t.Run("the cost of preferring the pod's record", w.preferCostCase)
	w.badSignatureCases(t)
	w.retaggedCases(t)
	w.multiArchCases(t)
	w.registryOutageCases(t)
	w.eventCases(t, kube)

	t.Run("plugin killed: every container refused", func(t *testing.T) {
		pod := w.runPod(t, "plugin-killed")
		if err := w.plugin.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-w.plugin.Done()
		// At once, before containerd has necessarily noticed: the gap
		// between the plugin's death and its removal must not admit either.
		// Observed: containerd still holds the dead connection, sends the
		// create (error: closed, plugin dropped, the create goes on), then
		// asks us to validate on the closed connection, which refuses:
		//   validator plugin 10-nri-image-verifier failed: ttrpc: closed
		// or, if it noticed first, the default validator's refusal below.
		msg := w.expectRefusedByContainerd(t, pod, "app-signed", w.signed.Ref)
		if !strings.Contains(msg, "ttrpc: closed") && !strings.Contains(msg, notPresent) {
			t.Errorf("refusal says neither %q nor %q: %s", "ttrpc: closed", notPresent, msg)
		}
		// Now containerd has dropped the plugin: the default validator
		// refuses, as required_plugins says.
		msg = w.expectRefusedByContainerd(t, pod, "app-unsigned", w.unsigned.Ref)
		if !strings.Contains(msg, notPresent) {
			t.Errorf("refusal does not say %q: %s", notPresent, msg)
		}
		for _, name := range []string{"app-signed", "app-unsigned"} {
			if lines := w.auditLines(t, "plugin-killed", name); len(lines) > 0 {
				t.Errorf("a dead plugin wrote an audit line: %v", lines)
			}
		}
	})
	t.Run("plugin restarted: allowed again, containerd not restarted", func(t *testing.T) {
		pid := w.containerd.PID()
		w.startPlugin(t)
		w.expectRuns(t, "plugin-restarted", w.signed.Ref, w.signed, "allow")
		if w.containerd.Exited() || w.containerd.PID() != pid {
			t.Error("containerd was restarted")
		}
		w.expectDenied(t, "plugin-restarted-unsigned", w.unsigned.Ref, w.unsigned, noSignature)
	})
	t.Run("plugin hung past the NRI request timeout: refused", func(t *testing.T) {
		w.pluginHung(t)
	})
	t.Run("after the hang: allowed again", func(t *testing.T) {
		w.expectRuns(t, "after-hang", w.signed.Ref, w.signed, "allow")
	})

	w.containerdRestartCases(t)
}

// TestContainerdFallback runs the core cases against containerd v2.2,
// whose NRI sends no Container.Image: the plugin finds the image's name
// and digests through containerd's own API (--containerd-socket,
// containerd/resolve), starting from the CRI image-name annotation. It also
// checks that this release's NRI (v0.11: validators and the default
// validator, no failure policy) keeps the gate closed when the plugin dies
// or hangs.
func TestContainerdFallback(t *testing.T) {
	w := newWorld(t, v22)
	w.pull(t, w.signed, w.bundled, w.unsigned)

	w.coreCases(t)
	w.byIDCases(t)
	t.Run("signed as a cosign v3 bundle: allowed and runs", func(t *testing.T) {
		w.expectRuns(t, "bundled-tag", w.bundled.Ref, w.bundled, "allow")
	})
	t.Run("unsigned by ID, user-specified image naming a signed tag", func(t *testing.T) {
		w.userSpecifiedFallback(t)
	})
	t.Run("image record re-pointed during the create", w.repointRaceCases)
	t.Run("one host in two cases, two records", w.caseFoldCases)
	t.Run("record re-created on a signed base of an extra-layer image: refused", w.repointExtraLayerCase)
	t.Run("record re-pointed long before the create to a signed base of an extra-layer image: refused", w.repointedLongAgoCase)
	// containerd >= 2.1 mounts image volumes; this release's NRI sends
	// their mounts too.
	w.restartPlugin(t, "--cri-state-dir", w.criStateDir())
	w.imageVolumeCases(t)
	t.Run("plugin killed: refused; restarted: allowed again", func(t *testing.T) {
		pod := w.runPod(t, "plugin-killed")
		if err := w.plugin.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-w.plugin.Done()
		msg := w.expectRefusedByContainerd(t, pod, "app-signed", w.signed.Ref)
		if !strings.Contains(msg, "ttrpc: closed") && !strings.Contains(msg, notPresent) {
			t.Errorf("refusal says neither %q nor %q: %s", "ttrpc: closed", notPresent, msg)
		}
		msg = w.expectRefusedByContainerd(t, pod, "app-unsigned", w.unsigned.Ref)
		if !strings.Contains(msg, notPresent) {
			t.Errorf("refusal does not say %q: %s", notPresent, msg)
		}
		w.startPlugin(t)
		w.expectRuns(t, "plugin-restarted", w.signed.Ref, w.signed, "allow")
	})
	t.Run("plugin hung past the NRI request timeout: refused", func(t *testing.T) {
		w.pluginHung(t)
	})
	t.Run("after the hang: allowed again", func(t *testing.T) {
		w.expectRuns(t, "after-hang", w.signed.Ref, w.signed, "allow")
	})
}

// coreCases: signed images run and unsigned ones are refused, whichever way
// the container names its image. A bare image ID carries no repository, so
// the rule must come from containerd's record, not from what was asked.
func (w *world) coreCases(t *testing.T) {
	t.Run("signed by tag: allowed and runs", func(t *testing.T) {
		w.expectRuns(t, "signed-tag", w.signed.Ref, w.signed, "allow")
	})
	t.Run("signed by digest: allowed and runs", func(t *testing.T) {
		w.expectRuns(t, "signed-digest", w.signed.ByDigest(), w.signed, "allow")
	})
	t.Run("signed by bare image ID: allowed and runs", func(t *testing.T) {
		w.expectRuns(t, "signed-id", w.signed.ConfigDigest, w.signed, "allow")
	})
	t.Run("unsigned by tag: refused", func(t *testing.T) {
		w.expectDenied(t, "unsigned-tag", w.unsigned.Ref, w.unsigned, noSignature)
	})
	t.Run("unsigned by digest: refused", func(t *testing.T) {
		w.expectDenied(t, "unsigned-digest", w.unsigned.ByDigest(), w.unsigned, noSignature)
	})
	t.Run("unsigned by bare image ID: refused", func(t *testing.T) {
		// The CRI image spec is "sha256:<config digest>", no repository.
		w.expectDenied(t, "unsigned-id", w.unsigned.ConfigDigest, w.unsigned, noSignature)
	})
}

// byIDCases: containers asked for by bare image ID in the two ways that
// matter on containerd v2.2, where the plugin sees only the CRI image-name
// annotation. There, the annotation is containerd's first name for the
// image (a tag before a digest before the ID), or the CRI
// user_specified_image when the client sets one; only then, or when the
// image has no other name, is it the bare ID that containerd/resolve must map
// to a repository through containerd's image store.
func (w *world) byIDCases(t *testing.T) {
	t.Run("signed by ID, also as the user-specified image: allowed and runs", func(t *testing.T) {
		ctx := context.Background()
		pod := w.runPod(t, "signed-id-user")
		id, err := w.cri.CreateContainerOf(ctx, pod, "app",
			&cri.ImageSpec{Image: w.signed.ConfigDigest, UserSpecifiedImage: w.signed.ConfigDigest})
		if err != nil {
			t.Fatalf("container of %s refused: %s", w.signed.ConfigDigest, containerdtest.CRIMessage(err))
		}
		w.checkStarted(t, id, w.signed, "signed-id-user", "app")
		// The rule was chosen by the image's tag, the first of its names.
		checkAudit(t, w.auditLine(t, "signed-id-user", "app"), w.signed, "allow", true)
	})
	t.Run("unsigned by ID, also as the user-specified image: refused", func(t *testing.T) {
		w.expectDeniedOf(t, "unsigned-id-user",
			&cri.ImageSpec{Image: w.unsigned.ConfigDigest, UserSpecifiedImage: w.unsigned.ConfigDigest},
			w.unsigned, noSignature)
	})
	t.Run("signed image known to containerd only by its ID: refused", func(t *testing.T) {
		// Its tag and digest records are deleted from containerd's image
		// store, as `ctr images rm` of its names would: no repository is
		// left to choose a rule by, so even a signed image is refused.
		img := w.push(t, "/e2e/nameless:v1", "signed, known only by ID")
		imagetest.SignLegacy(t, img.Repo(), img.Digest, w.key, imagetest.SignOptions{})
		w.pull(t, img)
		w.forgetNames(t, img)
		pod := w.runPod(t, "nameless")
		msg := w.expectRefusedByContainerd(t, pod, "app", img.ConfigDigest)
		// containerd >= 2.4 names the image by the only record it has, the
		// ID, and sends its digest; on v2.2 containerd/resolve finds no
		// repository name for the ID, and the digest stays unknown.
		digest, shown := img.Digest, img.Digest
		if !w.rel.digestFromNRI {
			digest, shown = "", "digest unknown"
			if want := "image " + img.ConfigDigest + " is known to containerd only by its ID"; !strings.Contains(w.plugin.Log(), want) {
				t.Errorf("the plugin's log does not say %q", want)
			}
		}
		want := fmt.Sprintf("nri-image-verifier: image %s (%s) denied by rule \"\" (validator none): "+
			"cannot tell the image's repository from %q", img.ConfigDigest, shown, img.ConfigDigest)
		if !strings.Contains(msg, want) {
			t.Errorf("refusal does not say %q: %s", want, msg)
		}
		line := w.auditLine(t, "nameless", "app")
		t.Logf("audit: verdict %v, image %v, digest %v, reason %v", line["verdict"], line["image"], line["digest"], line["reason"])
		if line["verdict"] != "deny" || line["allowed"] != false || line["image"] != img.ConfigDigest || line["digest"] != digest {
			t.Errorf("audit line: %v", line)
		}
		if r, _ := line["reason"].(string); r == "" || !strings.Contains(msg, r) {
			t.Errorf("refusal does not carry the audit reason %q: %s", r, msg)
		}
	})
}

// forgetNames deletes img's tag and digest records from containerd's image
// store (namespace k8s.io), keeping the record named by its ID, and waits
// until the CRI plugin's view of the image has no names either.
func (w *world) forgetNames(t *testing.T, img containerdtest.Image) {
	t.Helper()
	images := w.images(t)
	ctx := images.ctx
	for _, n := range []string{img.Ref, img.ByDigest()} {
		if _, err := images.Delete(ctx, &imagesapi.DeleteImageRequest{Name: n, Sync: true}); err != nil {
			t.Fatalf("delete image record %s: %v", n, err)
		}
	}
	if _, err := images.Get(ctx, &imagesapi.GetImageRequest{Name: img.ConfigDigest}); err != nil {
		t.Fatalf("the record named by the ID went too: %v", err)
	}
	deadline := time.Now().Add(wait)
	for {
		resp, err := w.cri.Images.ImageStatus(ctx, &cri.ImageStatusRequest{Image: &cri.ImageSpec{Image: img.ConfigDigest}})
		if err != nil {
			t.Fatal(err)
		}
		st := resp.GetImage()
		if st == nil {
			t.Fatalf("containerd's CRI no longer knows image %s", img.ConfigDigest)
		}
		if len(st.GetRepoTags())+len(st.GetRepoDigests()) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("CRI still names image %s: %v %v", img.ConfigDigest, st.GetRepoTags(), st.GetRepoDigests())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// badSignatureCases: signatures that exist but do not satisfy the rule.
func (w *world) badSignatureCases(t *testing.T) {
	t.Run("signed with a key the policy does not trust: refused", func(t *testing.T) {
		img := w.push(t, "/e2e/other-key:v1", "signed with another key")
		stranger := imagetest.NewSigner(t, imagetest.ECDSAP256)
		imagetest.SignLegacy(t, img.Repo(), img.Digest, stranger, imagetest.SignOptions{})
		imagetest.SignBundle(t, img.Repo(), img.Digest, stranger, imagetest.SignOptions{})
		w.pull(t, img)
		w.expectDenied(t, "other-key", img.Ref, img, `2 signatures found, none verified with trust root "e2e-key"`)
	})
	t.Run("signatures of another digest replayed onto the image: refused", func(t *testing.T) {
		// Genuine signatures by the trusted key, of another image in the
		// same repository, copied to this image's .sig tag and referrers,
		// as anyone with push access could.
		good := w.push(t, "/e2e/replayed:signed", "the image the signatures are for")
		img := w.push(t, "/e2e/replayed:v1", "replayed signatures")
		imagetest.SignLegacy(t, good.Repo(), good.Digest, w.key, imagetest.SignOptions{})
		imagetest.SignBundle(t, good.Repo(), good.Digest, w.key, imagetest.SignOptions{})
		imagetest.CopySignatures(t, img.Repo(), good.Digest, img.Digest)
		w.pull(t, img)
		w.expectDenied(t, "replayed", img.Ref, img,
			fmt.Sprintf("2 signatures found, none verified with trust root \"e2e-key\": signature names digest %s, not %s",
				good.Digest, img.Digest))
	})
	t.Run("threshold 2, signed by one root: refused", func(t *testing.T) {
		img := w.push(t, "/e2e/threshold/one:v1", "signed by one of two roots")
		imagetest.SignLegacy(t, img.Repo(), img.Digest, w.key, imagetest.SignOptions{})
		w.pull(t, img)
		msg := w.expectDenied(t, "threshold-one", img.Ref, img, "threshold 2 not met: signed by [e2e-key]")
		if rule := fmt.Sprintf("denied by rule %q", w.registry+"/e2e/threshold/*"); !strings.Contains(msg, rule) {
			t.Errorf("refusal does not say %s: %s", rule, msg)
		}
	})
	t.Run("threshold 2, signed by both roots: allowed and runs", func(t *testing.T) {
		// The control: the rule above can be met.
		img := w.push(t, "/e2e/threshold/both:v1", "signed by both roots")
		imagetest.SignLegacy(t, img.Repo(), img.Digest, w.key, imagetest.SignOptions{})
		imagetest.SignBundle(t, img.Repo(), img.Digest, w.key2, imagetest.SignOptions{})
		w.pull(t, img)
		line := w.expectRuns(t, "threshold-both", img.Ref, img, "allow")
		if r, _ := line["reason"].(string); !strings.Contains(r, "signed by trust roots [e2e-key e2e-key-2] (threshold 2)") {
			t.Errorf("audit reason %q does not name both roots", r)
		}
	})
}

// retaggedCases: a tag moved in the registry between the pull and the
// create. containerd makes the container from the image it pulled, so the
// check must be about that digest, not about what the tag names now.
func (w *world) retaggedCases(t *testing.T) {
	t.Run("tag moved to an unsigned image after the pull: the pulled signed image is allowed and runs", func(t *testing.T) {
		pulled := w.push(t, "/e2e/moved-away:v1", "signed, pulled before the tag moved")
		imagetest.SignLegacy(t, pulled.Repo(), pulled.Digest, w.key, imagetest.SignOptions{})
		w.pull(t, pulled)
		now := w.push(t, "/e2e/moved-away:v1", "unsigned, pushed to the tag after the pull")
		w.checkTag(t, pulled.Ref, now.Digest)
		w.expectRuns(t, "moved-away", pulled.Ref, pulled, "allow")
	})
	t.Run("tag moved to a signed image after the pull: the pulled unsigned image is refused", func(t *testing.T) {
		pulled := w.push(t, "/e2e/moved-here:v1", "unsigned, pulled before the tag moved")
		w.pull(t, pulled)
		now := w.push(t, "/e2e/moved-here:v1", "signed, pushed to the tag after the pull")
		imagetest.SignLegacy(t, now.Repo(), now.Digest, w.key, imagetest.SignOptions{})
		w.checkTag(t, pulled.Ref, now.Digest)
		w.expectDenied(t, "moved-here", pulled.Ref, pulled, noSignature)
	})
}

// multiArchCases: an index for two platforms, of which containerd pulls
// and runs this node's. Publishers sign the index digest.
func (w *world) multiArchCases(t *testing.T) {
	push := func(t *testing.T, repoTag, say string) containerdtest.Index {
		idx, err := containerdtest.PushRunnableIndex(w.registry+repoTag, w.program, say)
		if err != nil {
			t.Fatal(err)
		}
		w.pull(t, idx.Image)
		return idx
	}
	t.Run("multi-arch index signed on the index: allowed and runs on this node's platform", func(t *testing.T) {
		idx := push(t, "/e2e/multi-arch:v1", "multi-arch, signed on the index")
		imagetest.SignLegacy(t, idx.Repo(), idx.Digest, w.key, imagetest.SignOptions{})
		// The audit line has the index digest and this platform's config:
		// the chain index -> manifest -> config was followed.
		w.expectRuns(t, "multi-arch", idx.Ref, idx.Image, "allow")
	})
	t.Run("multi-arch index signed only on the other platform's manifest: refused", func(t *testing.T) {
		idx := push(t, "/e2e/multi-arch-other:v1", "multi-arch, other platform signed")
		imagetest.SignLegacy(t, idx.Repo(), idx.OtherManifest, w.key, imagetest.SignOptions{})
		w.expectDenied(t, "multi-arch-other", idx.Ref, idx.Image,
			fmt.Sprintf("no cosign signature found for %s or %s", idx.Digest, idx.Manifest))
	})
}

// registryOutageCases: the registry is slow or unreachable when a
// container of a not yet verified image is created. The plugin answers
// before containerd's deadline with a refusal that says why, and a retry
// once the registry answers again is allowed.
func (w *world) registryOutageCases(t *testing.T) {
	t.Run("registry slower than the deadline: refused as still running; allowed on retry once it answers", func(t *testing.T) {
		img := w.push(t, "/e2e/slow:v1", "signed, registry slow")
		imagetest.SignLegacy(t, img.Repo(), img.Digest, w.key, imagetest.SignOptions{})
		w.pull(t, img)
		f := w.faults.slow("e2e/slow")
		defer w.faults.heal("e2e/slow")

		pod := w.runPod(t, "registry-slow")
		start := time.Now()
		msg := w.expectRefusedByContainerd(t, pod, "try-1", img.Ref)
		took := time.Since(start)
		t.Logf("refused after %v; %d registry requests held", took.Round(time.Millisecond), f.hits.Load())
		w.checkPending(t, msg, img, "registry-slow", "try-1", "verification still running")
		// The plugin answered, within its decision timeout (1.5s), before
		// containerd's: it was not dropped.
		if took >= requestTimeout {
			t.Errorf("refused after %v, not before the %v NRI request timeout", took, requestTimeout)
		}
		if f.hits.Load() == 0 {
			t.Error("the verifier did not ask the slow registry: what did it refuse on?")
		}

		w.faults.heal("e2e/slow")
		w.retryUntilRuns(t, pod, img, "registry-slow")
	})
	t.Run("registry unreachable: refused as failed; allowed on retry once it answers", func(t *testing.T) {
		img := w.push(t, "/e2e/down:v1", "signed, registry down")
		imagetest.SignLegacy(t, img.Repo(), img.Digest, w.key, imagetest.SignOptions{})
		w.pull(t, img)
		f := w.faults.down("e2e/down")
		defer w.faults.heal("e2e/down")

		pod := w.runPod(t, "registry-down")
		msg := w.expectRefusedByContainerd(t, pod, "try-1", img.Ref)
		t.Logf("%d registry connections dropped", f.hits.Load())
		w.checkPending(t, msg, img, "registry-down", "try-1", "verification failed")
		if f.hits.Load() == 0 {
			t.Error("the verifier did not ask the unreachable registry: what did it refuse on?")
		}

		w.faults.heal("e2e/down")
		w.retryUntilRuns(t, pod, img, "registry-down")
	})
}

// checkPending checks a refusal for want ("verification still running" or
// "verification failed"), not a verdict on the signatures, and its audit
// line.
func (w *world) checkPending(t *testing.T, msg string, img containerdtest.Image, pod, ctr, want string) {
	t.Helper()
	if !strings.Contains(msg, "nri-image-verifier: image "+img.Ref+" ("+img.Digest+")") || !strings.Contains(msg, want) {
		t.Errorf("refusal does not name the image and say %q: %s", want, msg)
	}
	if strings.Contains(msg, "no cosign signature") {
		t.Errorf("a registry outage was taken for a missing signature: %s", msg)
	}
	line := w.auditLine(t, pod, ctr)
	checkAudit(t, line, img, "deny", false)
	// The message wraps the audit reason: a pending refusal's reason says
	// the deadline passed, a failed one's names the failure.
	wantReason := want
	if want == "verification still running" {
		wantReason = "no verdict by the decision deadline"
	}
	if r, _ := line["reason"].(string); !strings.Contains(r, wantReason) || !strings.Contains(msg, r) {
		t.Errorf("audit reason %q does not say %q or is not in the refusal %q", r, wantReason, msg)
	}
	if want == "verification still running" && line["pending"] != true {
		t.Errorf("audit line is not marked pending: %v", line)
	}
}

// retryUntilRuns creates containers try-2, try-3, ... of img in pod, as
// kubelet retries, until one is allowed, and checks it runs. Every refusal
// on the way must be a transient one: the outage must never be remembered
// as a verdict on the image.
func (w *world) retryUntilRuns(t *testing.T, pod containerdtest.Pod, img containerdtest.Image, podName string) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(errorTTL + 10*time.Second)
	for i := 2; ; i++ {
		name := fmt.Sprintf("try-%d", i)
		id, err := w.cri.CreateContainer(ctx, pod, name, img.Ref)
		if err == nil {
			t.Logf("retry %d allowed", i-1)
			w.checkStarted(t, id, img, podName, name)
			checkAudit(t, w.auditLine(t, podName, name), img, "allow", true)
			return
		}
		msg := containerdtest.CRIMessage(err)
		t.Logf("retry %d refused: %s", i-1, msg)
		if !strings.Contains(msg, "verification still running") && !strings.Contains(msg, "verification failed") {
			t.Fatalf("retry refused for another reason than the outage: %s", msg)
		}
		if time.Now().After(deadline) {
			t.Fatalf("still refused %v after the registry answers again", errorTTL+10*time.Second)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// userSpecifiedFallback: kubelet passes the image ID it pulled as the CRI
// image and the pod spec's image string as user_specified_image, which
// containerd copies into the image-name annotation. containerd v2.2 sends
// no Container.Image, so the plugin's fallback knows the image only by that
// annotation. Here a CRI client asks for the unsigned image's ID while
// naming the signed image's tag.
//
// Observed on containerd v2.2.9: the plugin resolves the annotation (the
// signed tag) in containerd's image store and checks the signed digest.
// The rootfs check (containerd/resolve Bind) then compares the container's
// snapshot, which exists when NRI is called, keyed by the container ID,
// with the signed config's layers: an image of other layers is refused.
// An image of the same layers and another config (these test images all
// hold one program and differ in its arguments) still passes: FAIL OPEN,
// which nothing in v2.2's NRI request can close (no field names the image
// or its config). Who can send such a request holds containerd's socket
// and could bypass NRI altogether through containerd's own API; with
// kubelet the two fields come from the same pod spec string and differ
// only if the tag moves in containerd's store between kubelet's image
// check and the create, which Bind refuses for 30 s after the record
// moved. containerd >= 2.4 refuses this container (TestContainerd).
func (w *world) userSpecifiedFallback(t *testing.T) {
	ctx := context.Background()
	pod := w.runPod(t, "user-specified")
	spec := &cri.ImageSpec{Image: w.unsigned.ConfigDigest, UserSpecifiedImage: w.signed.Ref}
	id, err := w.cri.CreateContainerOf(ctx, pod, "app", spec)
	if err != nil {
		// What should happen: the container is refused as the unsigned
		// image it is. If this branch runs, the hole is closed; update the
		// test and the README.
		msg := containerdtest.CRIMessage(err)
		t.Errorf("the v2.2 fallback now refuses this container (update the test and README): %s", msg)
		return
	}
	t.Logf("FAIL OPEN (containerd v2.2 fallback): container of %s created while the plugin checked %s",
		w.unsigned.ConfigDigest, w.signed.Ref)
	// The audit line says the signed image was allowed; the container runs
	// the unsigned one.
	checkAudit(t, w.auditLine(t, "user-specified", "app"), w.signed, "allow", true)
	w.checkStarted(t, id, w.unsigned, "user-specified", "app")

	// Other layers than the signed image's: refused by the rootfs check.
	other, err := containerdtest.PushRunnable(w.registry+"/e2e/user-specified-other:v1", append(slices.Clone(w.program), '\n'), "unsigned, other layers")
	if err != nil {
		t.Fatal(err)
	}
	w.pull(t, other)
	pod = w.runPod(t, "user-specified-other")
	msg := w.expectRefusedOf(t, pod, "app", &cri.ImageSpec{Image: other.ConfigDigest, UserSpecifiedImage: w.signed.Ref})
	if want := "the container's root filesystem was not made from the verified image"; !strings.Contains(msg, want) {
		t.Errorf("refusal does not say %q: %s", want, msg)
	}
}

// containerdRestartCases: containerd restarts (an upgrade, a crash) while
// the plugin runs. The plugin reconnects on its own, and until it has,
// containers are refused.
func (w *world) containerdRestartCases(t *testing.T) {
	t.Run("containerd restarted: the plugin reconnects and decides again", func(t *testing.T) {
		pluginPID, ctrdPID := w.plugin.PID(), w.containerd.PID()
		connected := strings.Count(w.plugin.Log(), `"connected to NRI runtime"`)
		disconnected := strings.Count(w.plugin.Log(), `"NRI runtime disconnected"`)
		start := time.Now()
		w.restartContainerd(t)
		ready := time.Since(start)
		w.waitConnected(t, connected)
		t.Logf("containerd ready again after %v, plugin reconnected after %v",
			ready.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
		if w.containerd.PID() == ctrdPID {
			t.Fatal("containerd was not restarted")
		}
		if w.plugin.Exited() || w.plugin.PID() != pluginPID {
			t.Fatal("the plugin was restarted too; the case is about it reconnecting")
		}
		if strings.Count(w.plugin.Log(), `"NRI runtime disconnected"`) <= disconnected {
			t.Error("the plugin did not log that containerd went away")
		}
		w.expectRuns(t, "ctrd-restarted", w.signed.Ref, w.signed, "allow")
		w.expectDenied(t, "ctrd-restarted-unsigned", w.unsigned.Ref, w.unsigned, noSignature)
	})
	t.Run("containerd restarted, plugin not yet back: refused until it reconnects", func(t *testing.T) {
		// The plugin is frozen across the restart so that containerd
		// comes back without it, deterministically: then the default
		// validator refuses every container (required_plugins).
		connected := strings.Count(w.plugin.Log(), `"connected to NRI runtime"`)
		if err := w.plugin.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		resumed := false
		resume := func() {
			if !resumed {
				resumed = true
				w.plugin.Signal(syscall.SIGCONT)
			}
		}
		defer resume()
		w.restartContainerd(t)
		pod := w.runPod(t, "ctrd-restarted-gap")
		msg := w.expectRefusedByContainerd(t, pod, "app-signed", w.signed.Ref)
		if !strings.Contains(msg, notPresent) {
			t.Errorf("refusal does not say %q: %s", notPresent, msg)
		}
		resume()
		w.waitConnected(t, connected)
		w.expectRuns(t, "ctrd-restarted-back", w.signed.Ref, w.signed, "allow")
	})
}

// pluginHung freezes the plugin past the NRI request timeout: containers
// are refused, not admitted.
func (w *world) pluginHung(t *testing.T) {
	pod := w.runPod(t, "plugin-hung")
	connected := strings.Count(w.plugin.Log(), `"connected to NRI runtime"`)
	if err := w.plugin.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			w.plugin.Signal(syscall.SIGCONT)
		}
	}
	defer resume()

	// Observed (v2.4.2 and v2.2.9): the create waits out the request
	// timeout, containerd drops the plugin and goes on with the create,
	// then asks us to validate on the now closed connection, which refuses:
	//   validator plugin 10-nri-image-verifier failed: ttrpc: closed
	// It is our being a validator that refuses here: the default
	// validator's required_plugins check alone would pass, since NRI lists
	// us as consulted before it sends the create.
	start := time.Now()
	msg := w.expectRefusedByContainerd(t, pod, "app-unsigned", w.unsigned.Ref)
	took := time.Since(start)
	t.Logf("unsigned, plugin stopped: refused after %v", took.Round(time.Millisecond))
	if took < requestTimeout {
		t.Errorf("refused after %v, before the %v request timeout: by what?", took, requestTimeout)
	}
	if want := "validator plugin 10-nri-image-verifier failed: ttrpc: closed"; !strings.Contains(msg, want) {
		t.Errorf("refusal does not say %q: %s", want, msg)
	}
	// A second container while the plugin is still stopped: containerd
	// has dropped it, so the default validator refuses at once.
	msg = w.expectRefusedByContainerd(t, pod, "app-signed", w.signed.Ref)
	if !strings.Contains(msg, notPresent) {
		t.Errorf("second refusal does not say %q: %s", notPresent, msg)
	}

	resume()
	w.waitConnected(t, connected)
	// Resumed, the plugin may still read the request it was frozen in;
	// its deadline has passed, so it audits a pending deny (observed:
	// reason "no decision within 0s"), never an allow for a container
	// containerd refused. The answer goes nowhere.
	for _, line := range w.auditLines(t, "plugin-hung", "app-unsigned") {
		t.Logf("audit line written after the plugin resumed: verdict %v, pending %v, reason %q",
			line["verdict"], line["pending"], line["reason"])
		if line["allowed"] != false {
			t.Errorf("audit line says allowed for a container containerd refused: %v", line)
		}
	}
}

// notPresent is the default validator's refusal when a required plugin is
// not connected.
const notPresent = `validator "00-default-validator" rejected container adjustment, ` +
	`reason: validation error: required plugin "nri-image-verifier" not present`

// noSignature is the cosign validator's reason for an image without any
// signature.
const noSignature = "no cosign signature found for "

// pull pulls images into containerd through CRI, as kubelet does.
func (w *world) pull(t *testing.T, imgs ...containerdtest.Image) {
	t.Helper()
	for _, img := range imgs {
		id, err := w.cri.Pull(context.Background(), img.Ref)
		if err != nil {
			t.Fatal(err)
		}
		if id != img.ConfigDigest {
			t.Fatalf("pulled %s as image %s, want %s", img.Ref, id, img.ConfigDigest)
		}
	}
}

// checkTag checks that the registry's tag ref now names digest.
func (w *world) checkTag(t *testing.T, ref, digest string) {
	t.Helper()
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Head(tag)
	if err != nil {
		t.Fatal(err)
	}
	if desc.Digest.String() != digest {
		t.Fatalf("registry: %s is %s, want %s", ref, desc.Digest, digest)
	}
}

// runPod starts a host-network pod in namespace e2e, removed when t ends.
func (w *world) runPod(t *testing.T, name string) containerdtest.Pod {
	t.Helper()
	return w.runPodOf(t, containerdtest.PodSpec{Namespace: "e2e", Name: name})
}

// runPodOf starts the host-network pod spec names (namespace, name and
// uid; its log directory and cgroup parent are the world's), removed when
// t ends.
func (w *world) runPodOf(t *testing.T, spec containerdtest.PodSpec) containerdtest.Pod {
	t.Helper()
	ctx := context.Background()
	spec.LogDir, spec.CgroupParent = w.podLogDir(spec.Name), "/"+w.cgroup
	pod, err := w.cri.RunHostPod(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := w.cri.RemovePod(context.Background(), pod); err != nil {
			t.Error(err)
		}
	})
	return pod
}

func (w *world) podLogDir(pod string) string { return filepath.Join(w.dir, "pod-logs", pod) }

// expectRuns: a container of image (a reference to img) is created,
// starts and runs img under runc; its audit line has verdict. It returns
// the audit line.
func (w *world) expectRuns(t *testing.T, podName, image string, img containerdtest.Image, verdict string) map[string]any {
	t.Helper()
	ctx := context.Background()
	pod := w.runPod(t, podName)
	id, err := w.cri.CreateContainer(ctx, pod, "app", image)
	if err != nil {
		t.Fatalf("container of %s refused: %s", image, containerdtest.CRIMessage(err))
	}
	w.checkStarted(t, id, img, podName, "app")
	line := w.auditLine(t, podName, "app")
	checkAudit(t, line, img, verdict, true)
	return line
}

// checkStarted starts container id (name, in pod podName) and checks that
// it runs img: containerd reports img's ID, and the container prints what
// img's arguments say, so the image that runs is the one that was checked.
func (w *world) checkStarted(t *testing.T, id string, img containerdtest.Image, podName, name string) {
	t.Helper()
	ctx := context.Background()
	if err := w.cri.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := w.cri.WaitRunning(ctx, id, wait); err != nil {
		t.Fatal(err)
	}
	st, err := w.cri.Runtime.ContainerStatus(ctx, &cri.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		t.Fatal(err)
	}
	// ImageId is the config digest (containerd >= 2.3 fills it); ImageRef
	// the repo digest, else the config digest.
	if id, ref := st.GetStatus().GetImageId(), st.GetStatus().GetImageRef(); id != img.ConfigDigest &&
		(id != "" || (ref != img.ConfigDigest && !strings.HasSuffix(ref, "@"+img.Digest))) {
		t.Errorf("containerd says the container runs image %q (ref %q), want %s (%s)", id, ref, img.ConfigDigest, img.Digest)
	}
	if img.Says == "" {
		return
	}
	logPath := filepath.Join(w.podLogDir(podName), name+".log")
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(readFile(logPath), " F "+img.Says+"\n") {
		if time.Now().After(deadline) {
			t.Errorf("container %s did not print %q; its log:\n%s", name, img.Says, readFile(logPath))
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// expectDenied: the container of image is refused with the plugin's
// message, which gives reason, and its audit line says deny. It returns
// the message.
func (w *world) expectDenied(t *testing.T, podName, image string, img containerdtest.Image, reason string) string {
	t.Helper()
	return w.expectDeniedOf(t, podName, &cri.ImageSpec{Image: image}, img, reason)
}

func (w *world) expectDeniedOf(t *testing.T, podName string, image *cri.ImageSpec, img containerdtest.Image, reason string) string {
	t.Helper()
	pod := w.runPod(t, podName)
	msg := w.expectRefusedOf(t, pod, "app", image)
	for _, want := range []string{
		"failed to create containerd container: failed to get NRI adjustment for container: rpc error: code = Unknown desc = nri-image-verifier: image ",
		img.Ref + " (" + img.Digest + ") denied by rule", reason,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("refusal does not say %q: %s", want, msg)
		}
	}
	line := w.auditLine(t, podName, "app")
	checkAudit(t, line, img, "deny", false)
	if r, _ := line["reason"].(string); r == "" || !strings.Contains(msg, r) {
		t.Errorf("refusal does not carry the audit reason %q: %s", r, msg)
	}
	return msg
}

// expectRefusedByContainerd creates a container of image in pod, expects
// the create to fail and no container to exist, and returns the message.
func (w *world) expectRefusedByContainerd(t *testing.T, pod containerdtest.Pod, name, image string) string {
	t.Helper()
	return w.expectRefusedOf(t, pod, name, &cri.ImageSpec{Image: image})
}

func (w *world) expectRefusedOf(t *testing.T, pod containerdtest.Pod, name string, image *cri.ImageSpec) string {
	t.Helper()
	ctx := context.Background()
	id, err := w.cri.CreateContainerOf(ctx, pod, name, image)
	if err == nil {
		t.Errorf("FAIL OPEN: container %s of %v was created (id %s)", name, image, id)
		return ""
	}
	msg := containerdtest.CRIMessage(err)
	t.Logf("CRI CreateContainer(%s) refused: %s", image.GetImage(), msg)
	resp, err := w.cri.Runtime.ListContainers(ctx, &cri.ListContainersRequest{
		Filter: &cri.ContainerFilter{PodSandboxId: pod.ID}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range resp.Containers {
		if c.GetMetadata().GetName() == name {
			t.Errorf("FAIL OPEN: refused container %s exists anyway: %v", name, c)
		}
	}
	return msg
}
