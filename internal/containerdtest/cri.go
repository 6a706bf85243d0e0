package containerdtest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// CRI is a client of containerd's CRI services, doing what kubelet does
// for a pod, nothing more.
type CRI struct {
	conn    *grpc.ClientConn
	Runtime cri.RuntimeServiceClient
	Images  cri.ImageServiceClient
}

// DialCRI connects to containerd's gRPC socket. Dialling is lazy; the first
// call fails if containerd is not there.
func DialCRI(socket string) (*CRI, error) {
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("CRI client for %s: %w", socket, err)
	}
	return &CRI{conn: conn, Runtime: cri.NewRuntimeServiceClient(conn), Images: cri.NewImageServiceClient(conn)}, nil
}

// WaitReady waits up to timeout for containerd's CRI services to answer:
// the socket is there before the CRI plugin has finished starting.
func (c *CRI) WaitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		_, err := c.Runtime.Version(ctx, &cri.VersionRequest{})
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("CRI not ready after %v: %w", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Close closes the connection.
func (c *CRI) Close() error { return c.conn.Close() }

// Pod is a running pod sandbox.
type Pod struct {
	ID     string
	Config *cri.PodSandboxConfig
}

// PodSpec says what RunHostPod starts.
type PodSpec struct {
	Namespace, Name string
	LogDir          string // container logs go here
	// UID is the pod's metadata uid: kubelet passes the API Pod's. ""
	// makes it Namespace-Name.
	UID string
	// CgroupParent (cgroupfs style, "/name") groups the pod's cgroups under
	// one per run, so cleaning up is removing that one; without it
	// containerd leaves an empty /k8s.io in every hierarchy.
	CgroupParent string
}

// RunHostPod starts a pod sandbox in the host's network namespace, which
// needs no CNI.
func (c *CRI) RunHostPod(ctx context.Context, spec PodSpec) (Pod, error) {
	uid := spec.UID
	if uid == "" {
		uid = spec.Namespace + "-" + spec.Name
	}
	cfg := &cri.PodSandboxConfig{
		Metadata:     &cri.PodSandboxMetadata{Name: spec.Name, Namespace: spec.Namespace, Uid: uid},
		LogDirectory: spec.LogDir,
		Linux: &cri.LinuxPodSandboxConfig{
			CgroupParent: spec.CgroupParent,
			SecurityContext: &cri.LinuxSandboxSecurityContext{
				NamespaceOptions: &cri.NamespaceOption{Network: cri.NamespaceMode_NODE},
			},
		},
	}
	resp, err := c.Runtime.RunPodSandbox(ctx, &cri.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		return Pod{}, fmt.Errorf("run pod %s/%s: %w", spec.Namespace, spec.Name, err)
	}
	return Pod{ID: resp.PodSandboxId, Config: cfg}, nil
}

// RemovePod stops and removes the pod and its containers; containerd then
// unmounts their root file systems and ends their shims.
func (c *CRI) RemovePod(ctx context.Context, p Pod) error {
	if _, err := c.Runtime.StopPodSandbox(ctx, &cri.StopPodSandboxRequest{PodSandboxId: p.ID}); err != nil {
		return fmt.Errorf("stop pod %s: %w", p.ID, err)
	}
	if _, err := c.Runtime.RemovePodSandbox(ctx, &cri.RemovePodSandboxRequest{PodSandboxId: p.ID}); err != nil {
		return fmt.Errorf("remove pod %s: %w", p.ID, err)
	}
	return nil
}

// RemovePods stops and removes every pod sandbox, as at the end of a run.
func (c *CRI) RemovePods(ctx context.Context) error {
	resp, err := c.Runtime.ListPodSandbox(ctx, &cri.ListPodSandboxRequest{})
	if err != nil {
		return fmt.Errorf("list pods: %w", err)
	}
	var errs []error
	for _, p := range resp.Items {
		errs = append(errs, c.RemovePod(ctx, Pod{ID: p.Id}))
	}
	return errors.Join(errs...)
}

// Pull pulls image and returns containerd's image ID (sha256:<config digest>).
func (c *CRI) Pull(ctx context.Context, image string) (string, error) {
	resp, err := c.Images.PullImage(ctx, &cri.PullImageRequest{Image: &cri.ImageSpec{Image: image}})
	if err != nil {
		return "", fmt.Errorf("pull %s: %w", image, err)
	}
	return resp.ImageRef, nil
}

// CreateContainer creates container name of image (a tag, repo@digest or
// image ID, as kubelet may pass it) in pod. The error of a refused
// container is containerd's gRPC status; CRIMessage extracts its text.
func (c *CRI) CreateContainer(ctx context.Context, p Pod, name, image string) (string, error) {
	return c.CreateContainerOf(ctx, p, name, &cri.ImageSpec{Image: image})
}

// CreateContainerOf is CreateContainer with the whole CRI image spec:
// kubelet (>= 1.29) passes the image ID it pulled as Image and the pod
// spec's image string as UserSpecifiedImage, which containerd then puts in
// the container's image-name annotation.
func (c *CRI) CreateContainerOf(ctx context.Context, p Pod, name string, image *cri.ImageSpec) (string, error) {
	return c.CreateContainerWith(ctx, p, name, image, nil)
}

// ImageVolume is the CRI mount kubelet asks for to mount image (Kubernetes
// volumes[].image) read-only at path: containerd (>= 2.1) mounts the
// image's file system there. The image must have been pulled first.
func ImageVolume(path, image string) *cri.Mount {
	return &cri.Mount{ContainerPath: path, Readonly: true, Image: &cri.ImageSpec{Image: image}}
}

// CreateContainerWith is CreateContainerOf with mounts, such as
// ImageVolume's.
func (c *CRI) CreateContainerWith(ctx context.Context, p Pod, name string, image *cri.ImageSpec, mounts []*cri.Mount) (string, error) {
	resp, err := c.Runtime.CreateContainer(ctx, &cri.CreateContainerRequest{
		PodSandboxId: p.ID,
		Config: &cri.ContainerConfig{
			Metadata: &cri.ContainerMetadata{Name: name},
			Image:    image,
			Mounts:   mounts,
			LogPath:  name + ".log",
			Linux:    &cri.LinuxContainerConfig{},
		},
		SandboxConfig: p.Config,
	})
	if err != nil {
		return "", err
	}
	return resp.ContainerId, nil
}

// StartContainer starts a created container.
func (c *CRI) StartContainer(ctx context.Context, id string) error {
	if _, err := c.Runtime.StartContainer(ctx, &cri.StartContainerRequest{ContainerId: id}); err != nil {
		return fmt.Errorf("start container %s: %w", id, err)
	}
	return nil
}

// WaitRunning waits up to timeout for the container to be running, as runc
// reports it to containerd.
func (c *CRI) WaitRunning(ctx context.Context, id string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := c.Runtime.ContainerStatus(ctx, &cri.ContainerStatusRequest{ContainerId: id})
		if err != nil {
			return fmt.Errorf("status of container %s: %w", id, err)
		}
		st := resp.GetStatus()
		switch st.GetState() {
		case cri.ContainerState_CONTAINER_RUNNING:
			return nil
		case cri.ContainerState_CONTAINER_EXITED:
			return fmt.Errorf("container %s exited (code %d, %s): %s", id, st.GetExitCode(), st.GetReason(), st.GetMessage())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("container %s is %s after %v, not running", id, st.GetState(), timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// CRIMessage is the text of a CRI call's error as kubelet sees it: the
// gRPC status message, without the "rpc error: code = ..." wrapping.
func CRIMessage(err error) string {
	if s, ok := status.FromError(err); ok {
		return s.Message()
	}
	return err.Error()
}
