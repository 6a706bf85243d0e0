package containerd

import (
	"context"
	"slices"
	"strings"
	"testing"

	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
	"google.golang.org/grpc/metadata"

	"github.com/nri-image-verifier/nri-image-verifier/internal/containerdtest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/imagetest"
)

// racer is an NRI plugin ordered before ours (index 05): while containerd
// creates a container of pod racePod, after the CRI plugin read the image
// record and prepared the rootfs from it, it re-points that record at
// another image. That is the window a tenant's own pull of a moved tag
// could hit on containerd < 2.4, where the gate reads the record again
// (containerd/resolve); here it is hit every time.
type racer struct {
	images   imagesapi.ImagesClient
	pod      string
	record   string           // the record to re-point
	to       *imagesapi.Image // the record whose target it gets
	recreate bool             // delete and create it (fresh timestamps) instead of updating it
	err      chan error
}

func (r *racer) CreateContainer(ctx context.Context, pod *api.PodSandbox, _ *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	if pod.GetName() != r.pod {
		return nil, nil, nil
	}
	ctx = metadata.AppendToOutgoingContext(ctx, "containerd-namespace", "k8s.io")
	img := &imagesapi.Image{Name: r.record, Target: r.to.GetTarget(), Labels: r.to.GetLabels()}
	var err error
	if r.recreate {
		if _, err = r.images.Delete(ctx, &imagesapi.DeleteImageRequest{Name: r.record, Sync: true}); err == nil {
			_, err = r.images.Create(ctx, &imagesapi.CreateImageRequest{Image: img})
		}
	} else {
		_, err = r.images.Update(ctx, &imagesapi.UpdateImageRequest{Image: img})
	}
	r.err <- err
	return nil, nil, nil
}

// repointRaceCases: the record a container was made from is re-pointed at
// a signed image during its create. On old main the gate verified the
// signed image and the unsigned one ran.
func (w *world) repointRaceCases(t *testing.T) {
	images := w.images(t)
	// The signed image is in the victim's repository, as the tenant's own
	// registry would serve it: the same program (one layer) as the
	// unsigned image with another config, or other layers.
	for _, tc := range []struct {
		name, pod   string
		otherLayers bool
		recreate    bool
		want        string
	}{
		{"record updated to a signed image of the same layers: refused", "race-updated", false, false,
			"containerd's image record changed while the container may have been being created"},
		{"record recreated on a signed image of other layers: refused", "race-recreated", true, true,
			"the container's root filesystem was not made from the verified image"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			victim := w.push(t, "/e2e/"+tc.pod+":v1", "unsigned, re-pointed during its create")
			program := w.program
			if tc.otherLayers {
				program = append(slices.Clone(w.program), '\n')
			}
			signed, err := containerdtest.PushRunnable(w.registry+"/e2e/"+tc.pod+":signed", program, "signed")
			if err != nil {
				t.Fatal(err)
			}
			imagetest.SignLegacy(t, signed.Repo(), signed.Digest, w.key, imagetest.SignOptions{})
			w.pull(t, victim, signed)
			r := &racer{images: images, pod: tc.pod, record: victim.Ref, to: images.get(t, signed.Ref), recreate: tc.recreate, err: make(chan error, 1)}
			s, err := stub.New(r, stub.WithPluginName("racer"), stub.WithPluginIdx("05"), stub.WithSocketPath(w.nriSocket()))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if err := s.Start(ctx); err != nil {
				t.Fatal(err)
			}
			defer s.Stop()
			pod := w.runPod(t, tc.pod)
			msg := w.expectRefusedByContainerd(t, pod, "app", victim.Ref)
			select {
			case err := <-r.err:
				if err != nil {
					t.Fatalf("the racer could not re-point %s: %v", victim.Ref, err)
				}
			default:
				t.Fatal("the racer never ran: the case proves nothing")
			}
			if !strings.Contains(msg, tc.want) {
				t.Errorf("refusal does not say %q: %s", tc.want, msg)
			}
		})
	}
}
