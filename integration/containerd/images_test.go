package containerd

import (
	"context"
	"testing"

	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// imageStore is containerd's image service in kubelet's namespace, for
// tests that edit records as a pull (or someone with the socket) would.
type imageStore struct {
	imagesapi.ImagesClient
	ctx context.Context // carries the namespace
}

// images dials the world's containerd for its image service; the
// connection closes when t ends.
func (w *world) images(t *testing.T) imageStore {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+w.socket(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return imageStore{imagesapi.NewImagesClient(conn), metadata.AppendToOutgoingContext(context.Background(), "containerd-namespace", "k8s.io")}
}

// get returns the record named name.
func (s imageStore) get(t *testing.T, name string) *imagesapi.Image {
	t.Helper()
	resp, err := s.Get(s.ctx, &imagesapi.GetImageRequest{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetImage()
}
