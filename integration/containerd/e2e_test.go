package containerd

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	cri "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestContainerd drives a real containerd through CRI as kubelet does,
// with nri-image-verifier as the NRI plugin the default validator
// requires. The subtests share one world and run in order: the last ones
// kill, restart and freeze the plugin.
func TestContainerd(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	// Pulls are not gated: the check is at creation. All images are in
	// containerd's store before any container is made of them.
	for _, img := range []Image{w.signed, w.bundled, w.unsigned, w.audited} {
		if _, err := w.cri.Pull(ctx, img.Ref); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("signed by tag: allowed and runs", func(t *testing.T) {
		w.expectRuns(t, "signed-tag", w.signed.Ref, w.signed, "allow")
	})
	t.Run("signed by digest: allowed and runs", func(t *testing.T) {
		w.expectRuns(t, "signed-digest", w.signed.ByDigest(), w.signed, "allow")
	})
	t.Run("signed as a cosign v3 bundle: allowed and runs", func(t *testing.T) {
		w.expectRuns(t, "bundled-tag", w.bundled.Ref, w.bundled, "allow")
	})
	t.Run("unsigned by tag: refused", func(t *testing.T) {
		w.expectDenied(t, "unsigned-tag", w.unsigned.Ref, w.unsigned)
	})
	t.Run("unsigned by digest: refused", func(t *testing.T) {
		w.expectDenied(t, "unsigned-digest", w.unsigned.ByDigest(), w.unsigned)
	})
	t.Run("unsigned by bare image ID: refused", func(t *testing.T) {
		// The CRI image spec is "sha256:<config digest>", no repository.
		w.expectDenied(t, "unsigned-id", w.unsigned.ConfigDigest, w.unsigned)
	})
	t.Run("unsigned in audit mode: allowed and runs, audited as audit-deny", func(t *testing.T) {
		w.expectRuns(t, "audited-tag", w.audited.Ref, w.audited, "audit-deny")
	})

	t.Run("plugin killed: every container refused", func(t *testing.T) {
		pod := w.runPod(t, "plugin-killed")
		if err := w.plugin.signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-w.plugin.done
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
		pid := w.containerd.pid()
		w.startPlugin(t)
		w.expectRuns(t, "plugin-restarted", w.signed.Ref, w.signed, "allow")
		if w.containerd.exited() || w.containerd.pid() != pid {
			t.Error("containerd was restarted")
		}
		w.expectDenied(t, "plugin-restarted-unsigned", w.unsigned.Ref, w.unsigned)
	})
	t.Run("plugin hung past the NRI request timeout: refused", func(t *testing.T) {
		pod := w.runPod(t, "plugin-hung")
		connected := strings.Count(w.plugin.logText(), `"connected to NRI runtime"`)
		if err := w.plugin.signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		resumed := false
		resume := func() {
			if !resumed {
				resumed = true
				w.plugin.signal(syscall.SIGCONT)
			}
		}
		defer resume()

		// Observed: the create waits out the request timeout, containerd
		// drops the plugin and goes on with the create, then asks us to
		// validate on the now closed connection, which refuses:
		//   validator plugin 10-nri-image-verifier failed: ttrpc: closed
		// It is our being a validator that refuses here: the default
		// validator's required_plugins check alone would pass, since NRI
		// lists us as consulted before it sends the create.
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
	})
	t.Run("after the hang: allowed again", func(t *testing.T) {
		w.expectRuns(t, "after-hang", w.signed.Ref, w.signed, "allow")
	})
}

// notPresent is the default validator's refusal when a required plugin is
// not connected.
const notPresent = `validator "00-default-validator" rejected container adjustment, ` +
	`reason: validation error: required plugin "nri-image-verifier" not present`

// runPod starts a host-network pod in namespace e2e, removed when t ends.
func (w *world) runPod(t *testing.T, name string) Pod {
	t.Helper()
	ctx := context.Background()
	pod, err := w.cri.RunHostPod(ctx, PodSpec{Namespace: "e2e", Name: name,
		LogDir: w.dir + "/pod-logs/" + name, CgroupParent: "/" + w.cgroup})
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

// expectRuns: a container of image (a reference to img) is created,
// starts and runs under runc; its audit line has verdict.
func (w *world) expectRuns(t *testing.T, podName, image string, img Image, verdict string) {
	t.Helper()
	ctx := context.Background()
	pod := w.runPod(t, podName)
	id, err := w.cri.CreateContainer(ctx, pod, "app", image)
	if err != nil {
		t.Fatalf("container of %s refused: %s", image, CRIMessage(err))
	}
	if err := w.cri.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := w.cri.WaitRunning(ctx, id, wait); err != nil {
		t.Fatal(err)
	}
	line := w.auditLine(t, podName, "app")
	checkAudit(t, line, img, verdict, true)
}

// expectDenied: the container of image is refused with the plugin's
// message, and its audit line says deny.
func (w *world) expectDenied(t *testing.T, podName, image string, img Image) {
	t.Helper()
	pod := w.runPod(t, podName)
	msg := w.expectRefusedByContainerd(t, pod, "app", image)
	for _, want := range []string{
		"failed to create containerd container: failed to get NRI adjustment for container: rpc error: code = Unknown desc = nri-image-verifier: image ",
		img.Digest, "denied by rule", "no cosign signature",
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
}

// expectRefusedByContainerd creates a container of image in pod, expects
// the create to fail and no container to exist, and returns the message.
func (w *world) expectRefusedByContainerd(t *testing.T, pod Pod, name, image string) string {
	t.Helper()
	ctx := context.Background()
	id, err := w.cri.CreateContainer(ctx, pod, name, image)
	if err == nil {
		t.Errorf("FAIL OPEN: container %s of %s was created (id %s)", name, image, id)
		return ""
	}
	msg := CRIMessage(err)
	t.Logf("CRI CreateContainer(%s) refused: %s", image, msg)
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
