// Package resolve finds a container's image digest through containerd's own
// API when the runtime does not send it through NRI (containerd before 2.4
// fills no Container.Image). It reads containerd's image store, the same
// records the runtime made the container's rootfs from, never a registry;
// the same reads serve prewarm and, through Content, the chain check. It
// talks to containerd's gRPC API only: it knows nothing of NRI (see plugin)
// or of policies (names are parsed by imageref).
package resolve

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	contentapi "github.com/containerd/containerd/api/services/content/v1"
	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	introspectionapi "github.com/containerd/containerd/api/services/introspection/v1"
	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/nri-image-verifier/nri-image-verifier/imageref"
)

// Namespace is the containerd namespace kubelet's containers live in.
const Namespace = "k8s.io"

// Image is a resolved image: a name the policy can match and the digests
// containerd's record holds.
type Image struct {
	Name         string
	Digest       string
	ConfigDigest string
	// Repointed is when containerd's record last changed its target (zero
	// when it never did): see Bind.
	Repointed time.Time
}

// Resolver reads containerd's image store over its gRPC socket.
type Resolver struct {
	owned         *grpc.ClientConn // closed by Close; nil when the caller owns the connection
	images        imagesapi.ImagesClient
	content       contentapi.ContentClient
	snapshots     snapshotsapi.SnapshotsClient
	introspection introspectionapi.IntrospectionClient
	namespace     string
	platform      platformMatcher
	now           func() time.Time
	snapshotState
}

// Dial makes a client of containerd's gRPC socket. It connects lazily, on
// the first request, and again after containerd restarts, so one connection
// can serve a Resolver and prewarm's event stream for the daemon's life.
func Dial(socket string) (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("containerd socket %s: %w", socket, err)
	}
	return conn, nil
}

// New connects (lazily) to containerd's socket; Close closes that
// connection. namespace "" means Namespace.
func New(socket, namespace string) (*Resolver, error) {
	conn, err := Dial(socket)
	if err != nil {
		return nil, err
	}
	r := NewConn(conn, namespace)
	r.owned = conn
	return r, nil
}

// NewConn reads containerd's image store over conn (see Dial), which the
// caller closes; Close then does nothing. namespace "" means Namespace.
func NewConn(conn grpc.ClientConnInterface, namespace string) *Resolver {
	if namespace == "" {
		namespace = Namespace
	}
	return &Resolver{
		images:        imagesapi.NewImagesClient(conn),
		content:       contentapi.NewContentClient(conn),
		snapshots:     snapshotsapi.NewSnapshotsClient(conn),
		introspection: introspectionapi.NewIntrospectionClient(conn),
		namespace:     namespace,
		platform:      defaultPlatform(),
		now:           time.Now,
	}
}

// Close closes the connection New made.
func (r *Resolver) Close() error {
	if r.owned == nil {
		return nil
	}
	return r.owned.Close()
}

// Resolve finds the image containerd knows by ref: a name (tag or digest
// reference, as the CRI image-name annotation carries it) or a bare image ID
// (sha256 of the config). For an ID it finds the repository names that
// containerd holds for the same target, since a policy matches names.
func (r *Resolver) Resolve(ctx context.Context, ref string) (Image, error) {
	ctx = metadata.AppendToOutgoingContext(ctx, "containerd-namespace", r.namespace)
	if imageref.IsImageID(ref) {
		return r.resolveID(ctx, ref)
	}
	// The record is looked up under containerd's own spelling of the name,
	// once: a folded or otherwise "nicer" spelling can name another record
	// ("evil.io/x:1" is not "EVIL.io/x:1" to containerd), whose digest is
	// not the one the container runs.
	stored, err := imageref.ContainerdName(ref)
	if err != nil {
		return Image{}, fmt.Errorf("image %q: %w", ref, err)
	}
	// Rules are matched on the record's name, never on the reference as
	// the pod wrote it: in "name:tag@digest" containerd pulls and files
	// the digest only, so the tag was never looked at by anyone and could
	// pick a laxer rule ("app:legacy-*") for any digest. This is the name
	// containerd >= 2.4 sends through NRI for the same record.
	norm, err := imageref.Normalize(stored)
	if err != nil {
		return Image{}, fmt.Errorf("image %q: %w", ref, err)
	}
	img, err := r.get(ctx, stored)
	if err != nil {
		return Image{}, err
	}
	return r.describe(ctx, norm, img)
}

// get looks up the record containerd files under name.
func (r *Resolver) get(ctx context.Context, name string) (*imagesapi.Image, error) {
	resp, err := r.images.Get(ctx, &imagesapi.GetImageRequest{Name: name})
	if status.Code(err) == codes.NotFound {
		return nil, fmt.Errorf("containerd has no image %q: %w", name, err)
	}
	if err != nil {
		return nil, fmt.Errorf("containerd: get image %q: %w", name, err)
	}
	return resp.GetImage(), nil
}

// resolveID maps an image ID to a repository name. The CRI plugin keeps an
// image record named by the ID beside the tag and digest records; they share
// a target. Names are tried in a fixed order, tags before digests, so the
// same image always meets the same rule.
func (r *Resolver) resolveID(ctx context.Context, id string) (Image, error) {
	if !strings.HasPrefix(id, "sha256:") {
		id = "sha256:" + id
	}
	img, err := r.get(ctx, id)
	if err != nil {
		return Image{}, err
	}
	target := img.GetTarget().GetDigest()
	list, err := r.images.List(ctx, &imagesapi.ListImagesRequest{Filters: []string{"target.digest==" + target}})
	if err != nil {
		return Image{}, fmt.Errorf("containerd: list images with target %s: %w", target, err)
	}
	var names []string
	for _, i := range list.GetImages() {
		if !imageref.IsImageID(i.GetName()) {
			if _, err := imageref.Repository(i.GetName()); err == nil {
				names = append(names, i.GetName())
			}
		}
	}
	if len(names) == 0 {
		return Image{}, fmt.Errorf("image %s is known to containerd only by its ID, so no policy rule can be chosen", id)
	}
	slices.SortFunc(names, func(a, b string) int {
		if da, db := strings.Contains(a, "@"), strings.Contains(b, "@"); da != db {
			if da {
				return 1
			}
			return -1
		}
		return strings.Compare(a, b)
	})
	res, err := r.describe(ctx, names[0], img)
	if err != nil {
		return Image{}, err
	}
	if res.ConfigDigest != id {
		return Image{}, fmt.Errorf("image ID %s: containerd's record leads to config %s", id, res.ConfigDigest)
	}
	return res, nil
}

// describe reads the record's target to find the config digest for this
// node's platform.
func (r *Resolver) describe(ctx context.Context, name string, img *imagesapi.Image) (Image, error) {
	t := img.GetTarget()
	if t == nil || t.GetDigest() == "" {
		return Image{}, errors.New("containerd: image record without a target")
	}
	cfg, err := r.configOf(ctx, t.GetMediaType(), t.GetDigest(), 0)
	if err != nil {
		return Image{}, fmt.Errorf("image %s (%s): %w", name, t.GetDigest(), err)
	}
	out := Image{Name: name, Digest: t.GetDigest(), ConfigDigest: cfg}
	// containerd's CRI updates a record only when a pull finds a new
	// target (or pins it); a record never updated keeps UpdatedAt equal
	// to CreatedAt.
	if u, c := img.GetUpdatedAt(), img.GetCreatedAt(); u != nil && c != nil && u.AsTime().After(c.AsTime()) {
		out.Repointed = u.AsTime()
	}
	return out, nil
}
