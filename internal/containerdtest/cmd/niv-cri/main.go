// Command niv-cri is the demo's kubelet: through containerd's CRI API it
// pulls the images, starts a host-network pod and creates a container of
// each image in it, then says what became of each, and removes the pod.
//
//	niv-cri -socket containerd.sock -log-dir DIR -expect-running IMAGE -expect-refused IMAGE
//
// It exits 1 if a container's fate is not the one expected: a refused
// image that runs is a hole in the gate, a signed image refused a bug.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path"
	"strings"
	"time"

	"github.com/nri-image-verifier/nri-image-verifier/internal/containerdtest"
)

// list is a repeatable flag.
type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(s string) error { *l = append(*l, s); return nil }

func main() {
	socket := flag.String("socket", "", "containerd's gRPC socket")
	logDir := flag.String("log-dir", "", "directory for the pod's container logs")
	cgroup := flag.String("cgroup-parent", "", `cgroup of the pod, cgroupfs style ("/name")`)
	var running, refused list
	flag.Var(&running, "expect-running", "image whose container must be created and run (repeatable)")
	flag.Var(&refused, "expect-refused", "image whose container must be refused (repeatable)")
	flag.Parse()
	if *socket == "" || *logDir == "" || len(running)+len(refused) == 0 {
		flag.Usage()
		os.Exit(2)
	}
	ok, err := run(*socket, containerdtest.PodSpec{Namespace: "demo", Name: "demo-pod", LogDir: *logDir, CgroupParent: *cgroup}, running, refused)
	if err != nil {
		fmt.Fprintln(os.Stderr, "niv-cri:", err)
		os.Exit(1)
	}
	if !ok {
		os.Exit(1)
	}
}

func run(socket string, spec containerdtest.PodSpec, running, refused []string) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := containerdtest.DialCRI(socket)
	if err != nil {
		return false, err
	}
	defer c.Close()
	if err := c.WaitReady(ctx, 30*time.Second); err != nil {
		return false, err
	}

	// Pulls are not gated: the check is at container creation, so an image
	// that is already on the node gets no free pass.
	for _, img := range append(append([]string{}, running...), refused...) {
		if _, err := c.Pull(ctx, img); err != nil {
			return false, err
		}
	}
	pod, err := c.RunHostPod(ctx, spec)
	if err != nil {
		return false, err
	}
	fmt.Printf("pod %s/%s: running (host network, pause image from the loopback registry)\n", spec.Namespace, spec.Name)
	// Removing the pod makes containerd stop its containers, unmount their
	// root file systems and end their shims.
	defer func() {
		if err := c.RemovePod(context.Background(), pod); err != nil {
			fmt.Fprintln(os.Stderr, "niv-cri:", err)
		}
	}()

	ok := true
	for _, img := range running {
		ok = expectRunning(ctx, c, pod, img) && ok
	}
	for _, img := range refused {
		ok = expectRefused(ctx, c, pod, img) && ok
	}
	return ok, nil
}

func expectRunning(ctx context.Context, c *containerdtest.CRI, pod containerdtest.Pod, img string) bool {
	name := containerName(img)
	id, err := c.CreateContainer(ctx, pod, name, img)
	if err == nil {
		err = c.StartContainer(ctx, id)
	}
	if err == nil {
		err = c.WaitRunning(ctx, id, 10*time.Second)
	}
	if err != nil {
		fmt.Printf("UNEXPECTED: container %q (%s) did not run:\n    %s\n", name, img, containerdtest.CRIMessage(err))
		return false
	}
	fmt.Printf("container %q (%s): created, started, running under runc\n", name, img)
	return true
}

func expectRefused(ctx context.Context, c *containerdtest.CRI, pod containerdtest.Pod, img string) bool {
	name := containerName(img)
	_, err := c.CreateContainer(ctx, pod, name, img)
	if err == nil {
		fmt.Printf("UNEXPECTED: container %q (%s) was created: the gate let it through\n", name, img)
		return false
	}
	fmt.Printf("container %q (%s): refused by containerd, as kubelet would see it:\n    %s\n", name, img, containerdtest.CRIMessage(err))
	return true
}

// containerName is the image's last path element without tag or digest.
func containerName(img string) string {
	n := path.Base(img)
	n, _, _ = strings.Cut(n, "@")
	n, _, _ = strings.Cut(n, ":")
	return n
}
