package containerd

import (
	"context"
	"runtime"
	"testing"

	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	"github.com/containerd/nri/pkg/stub"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/nri-image-verifier/nri-image-verifier/internal/containerdtest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/imagebuildtest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
)

// TestContainerdFallbackRepointExtraLayer attacks Bind's user-namespace
// allowance ("one level up is trusted") on containerd v2.2.9: the unsigned
// image is the signed image's layers plus one more layer of the
// attacker's, with its own config. The container's rootfs snapshot then
// sits on chain(signed + extra), a committed snapshot whose own parent is
// chain(signed), which is exactly what the remapped-copy allowance
// accepts. The record is deleted and created again on the signed image
// during the create (fresh timestamps: no re-point window), as the racing
// NRI plugin of race_test.go does.
//
// Safe behaviour (asserted): the unsigned image's container is refused.
func TestContainerdFallbackRepointExtraLayer(t *testing.T) {
	w := newWorld(t, v22)
	ctx := context.Background()

	signed, err := containerdtest.PushRunnable(w.registry+"/e2e/race-extra:signed", w.program, "signed base")
	if err != nil {
		t.Fatal(err)
	}
	imagetest.SignLegacy(t, signed.Repo(), signed.Digest, w.key, imagetest.SignOptions{})

	// The unsigned image: the signed one's layer, one extra layer, and a
	// config of its own (another command line).
	tag, err := name.NewTag(signed.Ref)
	if err != nil {
		t.Fatal(err)
	}
	base, err := remote.Image(tag)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := imagebuildtest.SingleFile("/attacker-payload", []byte("not signed by anyone\n"), runtime.GOARCH, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	extra, err := payload.Layers()
	if err != nil {
		t.Fatal(err)
	}
	evil, err := mutate.AppendLayers(base, extra...)
	if err != nil {
		t.Fatal(err)
	}
	const says = "unsigned: the signed layers plus one"
	evil, err = imagebuildtest.WithConfig(evil, func(cf *v1.ConfigFile) { cf.Config.Cmd = []string{says} })
	if err != nil {
		t.Fatal(err)
	}
	evilRef := w.registry + "/e2e/race-extra:v1"
	etag, err := name.NewTag(evilRef)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(etag, evil); err != nil {
		t.Fatal(err)
	}
	ed, _ := evil.Digest()
	ec, _ := evil.ConfigName()
	victim := containerdtest.Image{Ref: evilRef, Digest: ed.String(), ConfigDigest: ec.String(), Says: says}
	w.pull(t, victim, signed)

	conn, err := grpc.NewClient("unix://"+w.socket(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	images := imagesapi.NewImagesClient(conn)
	mctx := metadata.AppendToOutgoingContext(ctx, "containerd-namespace", "k8s.io")
	to, err := images.Get(mctx, &imagesapi.GetImageRequest{Name: signed.Ref})
	if err != nil {
		t.Fatal(err)
	}
	r := &racer{images: images, pod: "race-extra", record: victim.Ref, to: to.GetImage(), recreate: true, err: make(chan error, 1)}
	s, err := stub.New(r, stub.WithPluginName("racer"), stub.WithPluginIdx("05"), stub.WithSocketPath(w.nriSocket()))
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := s.Start(sctx); err != nil {
		t.Fatal(err)
	}
	defer s.Stop()

	pod := w.runPod(t, "race-extra")
	id, err := w.cri.CreateContainer(ctx, pod, "app", victim.Ref)
	select {
	case rerr := <-r.err:
		if rerr != nil {
			t.Fatalf("the racer could not re-point %s: %v", victim.Ref, rerr)
		}
	default:
		t.Fatal("the racer never ran: the case proves nothing")
	}
	if err != nil {
		t.Logf("refused (safe): %s", containerdtest.CRIMessage(err))
		return
	}
	t.Logf("audit line: %v", w.auditLine(t, "race-extra", "app"))
	w.checkStarted(t, id, victim, "race-extra", "app")
	t.Errorf("HOLE: the unsigned image %s (signed layers plus one) was created and runs: the gate verified %s and Bind accepted the rootfs one level up", victim.Digest, signed.Digest)
}
