package prewarm

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	eventsv1 "github.com/containerd/containerd/api/services/events/v1"
	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	"github.com/containerd/containerd/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/nri-image-verifier/nri-image-verifier/containerd/resolve"
)

// fakeContainerd serves the events and images services: Subscribe sends
// what is put on events, List returns images.
type fakeContainerd struct {
	eventsv1.UnimplementedEventsServer
	imagesapi.UnimplementedImagesServer
	events  chan *types.Envelope
	images  []string
	filters chan []string
}

func (f *fakeContainerd) Subscribe(req *eventsv1.SubscribeRequest, srv eventsv1.Events_SubscribeServer) error {
	f.filters <- req.GetFilters()
	for {
		select {
		case <-srv.Context().Done():
			return nil
		case ev := <-f.events:
			if err := srv.Send(ev); err != nil {
				return err
			}
		}
	}
}

func (f *fakeContainerd) List(ctx context.Context, _ *imagesapi.ListImagesRequest) (*imagesapi.ListImagesResponse, error) {
	if md, _ := metadata.FromIncomingContext(ctx); !slices.Equal(md.Get("containerd-namespace"), []string{"k8s.io"}) {
		return nil, errors.New("no namespace")
	}
	var out []*imagesapi.Image
	for _, n := range f.images {
		out = append(out, &imagesapi.Image{Name: n})
	}
	return &imagesapi.ListImagesResponse{Images: out}, nil
}

func serveFake(t *testing.T, f *fakeContainerd) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "prewarm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "containerd.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	eventsv1.RegisterEventsServer(srv, f)
	imagesapi.RegisterImagesServer(srv, f)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return sock
}

// imageEvent is what containerd publishes for an image record: an
// ImageCreate or ImageUpdate, {name = 1; labels = 2}.
func imageEvent(topic, name string) *types.Envelope {
	var b []byte
	b = protowire.AppendTag(b, 2, protowire.BytesType) // a label first
	entry := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "io.cri-containerd.image")
	entry = protowire.AppendString(protowire.AppendTag(entry, 2, protowire.BytesType), "managed")
	b = protowire.AppendBytes(b, entry)
	b = protowire.AppendString(protowire.AppendTag(b, 1, protowire.BytesType), name)
	return &types.Envelope{Namespace: "k8s.io", Topic: topic,
		Event: &anypb.Any{TypeUrl: "containerd.events.ImageCreate", Value: b}}
}

type fakeResolver struct{}

func (fakeResolver) Resolve(_ context.Context, ref string) (resolve.Image, error) {
	if strings.Contains(ref, "missing") {
		return resolve.Image{}, errors.New("containerd has no image")
	}
	return resolve.Image{Name: ref, Digest: "sha256:" + strings.Repeat("1", 64), ConfigDigest: "sha256:" + strings.Repeat("2", 64)}, nil
}

type fakeWarmer struct {
	mu     sync.Mutex
	images []string
}

func (w *fakeWarmer) Prewarm(_ context.Context, image, digest, config string) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.images = append(w.images, image)
	return 1, nil
}

func TestRun(t *testing.T) {
	f := &fakeContainerd{events: make(chan *types.Envelope), filters: make(chan []string, 4),
		images: []string{"127.0.0.1:5000/old:v1", "sha256:" + strings.Repeat("3", 64)}}
	sock := serveFake(t, f)
	w := &fakeWarmer{}
	warmed := make(chan string, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Socket: sock, Resolver: fakeResolver{}, Existing: true,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			OnWarm: func(image string, _ int, err error) {
				if err == nil {
					warmed <- image
				}
			}}, w)
	}()
	select {
	case filters := <-f.filters:
		want := []string{`topic=="/images/create",namespace=="k8s.io"`, `topic=="/images/update",namespace=="k8s.io"`}
		if !slices.Equal(filters, want) {
			t.Errorf("filters %q, want %q", filters, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no subscription")
	}
	for _, ev := range []*types.Envelope{
		imageEvent("/images/create", "127.0.0.1:5000/app:v1"),
		imageEvent("/images/create", "sha256:"+strings.Repeat("4", 64)), // the CRI's ID record: skipped
		imageEvent("/images/update", "127.0.0.1:5000/app:v2"),
		imageEvent("/images/create", "127.0.0.1:5000/missing:v1"), // resolution fails: skipped
	} {
		f.events <- ev
	}
	var got []string
	for len(got) < 3 {
		select {
		case image := <-warmed:
			got = append(got, image)
		case <-time.After(10 * time.Second):
			t.Fatalf("warmed %v, want 3 images", got)
		}
	}
	slices.Sort(got)
	if want := []string{"127.0.0.1:5000/app:v1", "127.0.0.1:5000/app:v2", "127.0.0.1:5000/old:v1"}; !slices.Equal(got, want) {
		t.Fatalf("warmed %v, want %v", got, want)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

// Given a connection, Run dials nothing: the event stream and the default
// Resolver both use it, and it is still open when Run returns.
func TestRunOnSharedConn(t *testing.T) {
	f := &fakeContainerd{events: make(chan *types.Envelope), filters: make(chan []string, 4)}
	conn, err := resolve.Dial(serveFake(t, f))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tried := make(chan error, 4)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Conn: conn, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			OnWarm: func(_ string, _ int, err error) { tried <- err }}, &fakeWarmer{})
	}()
	select {
	case <-f.filters:
	case <-time.After(10 * time.Second):
		t.Fatal("no subscription over the shared connection")
	}
	f.events <- imageEvent("/images/create", "127.0.0.1:5000/app:v1")
	select {
	case err := <-tried:
		// The fake serves no image Get: the default Resolver reached it.
		if status.Code(err) != codes.Unimplemented {
			t.Errorf("default Resolver: %v, want the fake's Unimplemented", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the image was not resolved")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if s := conn.GetState(); s == connectivity.Shutdown {
		t.Error("Run closed the caller's connection")
	}
}

// Without containerd, Run keeps retrying quietly until cancelled.
func TestRunWithoutContainerd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := Run(ctx, Config{Socket: filepath.Join(t.TempDir(), "none.sock"), Resolver: fakeResolver{},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, &fakeWarmer{})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestImageName(t *testing.T) {
	if _, err := imageName([]byte{0xff}); err == nil {
		t.Error("garbage decoded")
	}
	if _, err := imageName(nil); err == nil {
		t.Error("empty event decoded")
	}
	name, err := imageName(imageEvent("/images/create", "a/b:c").GetEvent().GetValue())
	if err != nil || name != "a/b:c" {
		t.Errorf("imageName = %q, %v", name, err)
	}
}
