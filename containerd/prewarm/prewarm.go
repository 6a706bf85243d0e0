// Package prewarm verifies images while containerd pulls them, before
// kubelet asks to create a container of them: it follows containerd's event
// stream, and for every image record the CRI creates or updates (a pull
// ends with one) it asks a Warmer (gate.Gate) to verify the image's digests
// against every policy rule the image can meet. The NRI hook then finds the
// verdict cached instead of paying for the verification on the node's
// serialised NRI path.
//
// It only ever adds verdicts to the cache; the hook decides as before, so a
// lost event, a slow registry or a containerd that is not there costs
// latency, never a wrong decision. It reads containerd's image store
// through containerd/resolve, and knows nothing of NRI, policies or
// signatures: it hands names and digests to the Warmer and skips the names
// that are image IDs (imageref.IsImageID).
package prewarm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	eventsv1 "github.com/containerd/containerd/api/services/events/v1"
	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/nri-image-verifier/nri-image-verifier/containerd/resolve"
	"github.com/nri-image-verifier/nri-image-verifier/imageref"
)

// Warmer verifies an image ahead of its containers; gate.Gate is one.
type Warmer interface {
	Prewarm(ctx context.Context, image, digest, configDigest string) (int, error)
}

// Resolver finds the digests containerd holds for an image name;
// resolve.Resolver is one.
type Resolver interface {
	Resolve(ctx context.Context, ref string) (resolve.Image, error)
}

// Defaults for Config fields left zero.
const (
	DefaultWorkers = 4
	DefaultTimeout = 30 * time.Second
	queueLen       = 1024
	minBackoff     = 100 * time.Millisecond
	maxBackoff     = 5 * time.Second
)

// Config configures Run.
type Config struct {
	// Socket is containerd's gRPC socket. Run dials it unless Conn is set;
	// it also names containerd in log lines.
	Socket string
	// Conn, if set, is the connection to containerd (see resolve.Dial),
	// shared with the Resolver; the caller closes it.
	Conn grpc.ClientConnInterface
	// Namespace is the containerd namespace of kubelet's images (default
	// resolve.Namespace, "k8s.io").
	Namespace string
	// Resolver reads image records; default a resolve.Resolver on the
	// same connection.
	Resolver Resolver
	// Workers bounds the verifications run at once (default 4), so that a
	// node pulling many images does not hammer their registries.
	Workers int
	// Timeout bounds one image's resolution and verification.
	Timeout time.Duration
	// Existing also warms the images containerd already holds when the
	// stream (re)connects: after a restart of the daemon its cache is empty.
	Existing bool
	// Logger receives connection problems and, at debug level, each image.
	Logger *slog.Logger
	// OnWarm, if set, is called after each image (for metrics and tests).
	OnWarm func(image string, rules int, err error)
}

// Run follows containerd's image events until ctx is done, reconnecting
// with backoff when the stream cannot be opened or breaks (a containerd
// restart). It returns nil when ctx is done.
func Run(ctx context.Context, cfg Config, w Warmer) error {
	if w == nil {
		return errors.New("prewarm: nil Warmer")
	}
	if cfg.Socket == "" && cfg.Conn == nil {
		return errors.New("prewarm: no containerd socket")
	}
	if cfg.Namespace == "" {
		cfg.Namespace = resolve.Namespace
	}
	if cfg.Workers <= 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	log := cfg.Logger.With("component", "prewarm")
	conn := cfg.Conn
	if conn == nil {
		c, err := resolve.Dial(cfg.Socket)
		if err != nil {
			return fmt.Errorf("prewarm: %w", err)
		}
		defer c.Close()
		conn = c
	}
	if cfg.Resolver == nil {
		cfg.Resolver = resolve.NewConn(conn, cfg.Namespace)
	}

	p := &prewarmer{cfg: cfg, w: w, log: log, queue: make(chan string, queueLen)}
	var wg sync.WaitGroup
	for range cfg.Workers {
		wg.Go(func() { p.work(ctx) })
	}
	defer wg.Wait()

	events := eventsv1.NewEventsClient(conn)
	images := imagesapi.NewImagesClient(conn)
	delay := minBackoff
	failing := false
	for {
		start := time.Now()
		err := p.follow(ctx, events, images)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(start) > maxBackoff {
			delay, failing = minBackoff, false // it was up for a while
		}
		if !failing {
			log.Warn("containerd image events unavailable; images are verified when their containers are created", "socket", cfg.Socket, "error", err)
			failing = true
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		delay = min(2*delay, maxBackoff)
	}
}

type prewarmer struct {
	cfg   Config
	w     Warmer
	log   *slog.Logger
	queue chan string
}

// follow subscribes to the image events of the namespace and queues each
// image name, first (with Existing) those already in the store.
func (p *prewarmer) follow(ctx context.Context, events eventsv1.EventsClient, images imagesapi.ImagesClient) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ns := fmt.Sprintf("namespace==%q", p.cfg.Namespace)
	stream, err := events.Subscribe(ctx, &eventsv1.SubscribeRequest{Filters: []string{
		`topic=="/images/create",` + ns,
		`topic=="/images/update",` + ns,
	}})
	if err != nil {
		return err
	}
	if p.cfg.Existing {
		// After subscribing, so that nothing pulled meanwhile is missed.
		list, err := images.List(metadata.AppendToOutgoingContext(ctx, "containerd-namespace", p.cfg.Namespace), &imagesapi.ListImagesRequest{})
		if err != nil {
			return fmt.Errorf("list images: %w", err)
		}
		for _, img := range list.GetImages() {
			p.enqueue(img.GetName())
		}
	}
	for {
		env, err := stream.Recv()
		if err != nil {
			return err
		}
		name, err := imageName(env.GetEvent().GetValue())
		if err != nil {
			p.log.Debug("undecodable image event", "topic", env.GetTopic(), "error", err)
			continue
		}
		p.enqueue(name)
	}
}

// enqueue queues a name the policy can match: the CRI also records every
// image under its ID (sha256:<config>), which names no repository, and
// under repo@digest, which names the same image as its tag.
func (p *prewarmer) enqueue(name string) {
	if name == "" || imageref.IsImageID(name) {
		return
	}
	select {
	case p.queue <- name:
	default:
		p.log.Debug("prewarm queue full; the image is verified at container creation", "image", name)
	}
}

func (p *prewarmer) work(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case name := <-p.queue:
			n, err := p.warm(ctx, name)
			if err != nil {
				p.log.Debug("prewarm failed; the image is verified at container creation", "image", name, "error", err)
			} else {
				p.log.Debug("prewarmed", "image", name, "rules", n)
			}
			if p.cfg.OnWarm != nil {
				p.cfg.OnWarm(name, n, err)
			}
		}
	}
}

func (p *prewarmer) warm(ctx context.Context, name string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	img, err := p.cfg.Resolver.Resolve(ctx, name)
	if err != nil {
		return 0, err
	}
	return p.w.Prewarm(ctx, img.Name, img.Digest, img.ConfigDigest)
}

// imageName reads field 1, the name, of a containerd.events.ImageCreate or
// ImageUpdate (both are {name = 1; labels = 2}), without the typeurl
// registry the generated types pull in.
func imageName(b []byte) (string, error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", protowire.ParseError(n)
		}
		b = b[n:]
		if num == 1 && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return "", protowire.ParseError(n)
			}
			return string(v), nil
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return "", protowire.ParseError(n)
		}
		b = b[n:]
	}
	return "", errors.New("image event without a name")
}
