package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"google.golang.org/grpc"

	"github.com/nri-image-verifier/nri-image-verifier/containerd/prewarm"
	"github.com/nri-image-verifier/nri-image-verifier/containerd/resolve"
	"github.com/nri-image-verifier/nri-image-verifier/gate"
	"github.com/nri-image-verifier/nri-image-verifier/plugin"
	"github.com/nri-image-verifier/nri-image-verifier/report"
)

// daemon is what `run` starts. newDaemon builds the parts that need no
// running context, start connects the rest, run serves until the context
// ends, and close releases everything in reverse order of acquisition.
type daemon struct {
	f   *runFlags
	log *slog.Logger

	metrics *report.Metrics
	gate    *gate.Gate
	// ctrd is the one connection to containerd's gRPC socket, shared by
	// images (the plugin's resolver and the chain check's content store)
	// and prewarm's event stream; nil without --containerd-socket.
	ctrd      *grpc.ClientConn
	images    *resolve.Resolver
	reporters report.Tee
	plugin    *plugin.Plugin

	cleanups []func()
}

// startError is a failure to start, with the words the log line leads with.
type startError struct {
	msg string
	err error
}

func (e startError) Error() string { return e.msg + ": " + e.err.Error() }
func (e startError) Unwrap() error { return e.err }

// logStartError logs why the daemon did not start.
func logStartError(log *slog.Logger, err error) {
	msg := "cannot start"
	var se startError
	if errors.As(err, &se) {
		msg, err = se.msg, se.err
	}
	log.Error(msg, "error", err.Error())
}

// newDaemon connects (lazily) to containerd, builds the gate from the
// policy and opens the audit log. Whatever it returns, even with an error,
// must be closed.
func newDaemon(f *runFlags, log *slog.Logger) (*daemon, error) {
	d := &daemon{f: f, log: log, metrics: report.NewMetrics()}
	f.verifier.metrics = d.metrics
	if f.containerd != "" {
		conn, err := resolve.Dial(f.containerd)
		if err != nil {
			return d, err
		}
		d.onClose(func() { _ = conn.Close() })
		d.ctrd, d.images = conn, resolve.NewConn(conn, resolve.Namespace)
		// Used only when the runtime does not send the image digest.
		f.plugin.Resolver = imageResolver{d.images}
		// The only source of an image volume's name.
		f.plugin.Images = imageResolver{d.images}
		if f.prewarm {
			// containerd's image store: what prewarm verifies, and the
			// manifests the chain check then reads without a registry
			// request.
			f.verifier.local = d.images
		}
	}
	g, _, err := f.verifier.build()
	if err != nil {
		return d, err
	}
	d.gate = g
	auditW, closeAudit, err := openAudit(f.auditPath)
	if err != nil {
		return d, startError{"cannot open audit log", err}
	}
	d.onClose(func() {
		if err := closeAudit(); err != nil {
			log.Error("closing the audit log", "error", err.Error())
		}
	})
	if f.node == "" {
		f.node, _ = os.Hostname()
	}
	d.reporters = report.Tee{report.NewAudit(auditW, f.node), d.metrics}
	return d, nil
}

// start connects what lives as long as ctx: the Kubernetes Events recorder,
// the NRI plugin (not yet registered) and the HTTP server.
func (d *daemon) start(ctx context.Context) error {
	if d.f.events {
		if ev := startEvents(ctx, d.f.kubeconfig, d.f.node, d.metrics, d.log); ev != nil {
			d.onClose(ev.Close)
			d.reporters = append(d.reporters, ev)
		}
	}
	p, err := plugin.New(d.f.plugin, d.gate, d.reporters)
	if err != nil {
		return err
	}
	d.plugin = p
	d.metrics.WatchNRI(p.Connected)
	if d.f.httpAddr != "" {
		return serveHTTP(ctx, d.f.httpAddr, healthHandler(d.metrics, d.ready), d.log)
	}
	return nil
}

// ready says why the daemon is not ready, for /readyz.
func (d *daemon) ready() error {
	if !d.plugin.Connected() {
		return errors.New("not registered with the container runtime over NRI")
	}
	if d.gate.Policy() == nil {
		return errors.New("no policy loaded")
	}
	return nil
}

// run watches the policy, prewarms if asked and serves the runtime's NRI
// requests until ctx is done. It returns the exit code.
func (d *daemon) run(ctx context.Context) int {
	f, g, log := d.f, d.gate, d.log
	go watchPolicy(ctx, f.verifier.policy, g, d.metrics, log)
	if f.prewarm {
		go prewarm.Run(ctx, prewarm.Config{Socket: f.containerd, Conn: d.ctrd, Namespace: resolve.Namespace,
			Resolver: d.images, Existing: true, Logger: log}, g)
	}
	warn(log, g.Policy())
	log.Info("nri-image-verifier starting", "policy", f.verifier.policy, "policy_version", g.Policy().Version,
		"nri_socket", f.plugin.Socket, "plugin", f.plugin.Index+"-"+f.plugin.Name)
	if err := d.plugin.Run(ctx); err != nil {
		log.Error("plugin stopped", "error", err.Error())
		return exitDeny
	}
	log.Info("nri-image-verifier stopped")
	return exitOK
}

// onClose adds a cleanup; close runs them last added first.
func (d *daemon) onClose(fn func()) { d.cleanups = append(d.cleanups, fn) }

// close releases what newDaemon and start acquired.
func (d *daemon) close() {
	for i := len(d.cleanups) - 1; i >= 0; i-- {
		d.cleanups[i]()
	}
	d.cleanups = nil
}

// imageResolver gives the plugin containerd's image store as its Resolver:
// plugin imports no containerd API, so the resolved image changes type here.
// It binds the answer to the container's rootfs: an image record re-pointed
// since the runtime read it is refused, not verified in the container's
// stead.
type imageResolver struct{ r *resolve.Resolver }

func (a imageResolver) Resolve(ctx context.Context, containerID, ref string) (plugin.Image, error) {
	img, err := a.r.Resolve(ctx, ref)
	if err != nil {
		return plugin.Image{}, err
	}
	if err := a.r.Bind(ctx, containerID, img); err != nil {
		return plugin.Image{}, fmt.Errorf("image %s: %w", img.Name, err)
	}
	return pluginImage(img), nil
}

func (a imageResolver) Lookup(ctx context.Context, ref string) (plugin.Image, error) {
	img, err := a.r.Resolve(ctx, ref)
	if err != nil {
		return plugin.Image{}, err
	}
	return pluginImage(img), nil
}

func (a imageResolver) CheckVolume(ctx context.Context, dir, configDigest string) error {
	return a.r.CheckVolume(ctx, dir, configDigest)
}

func (a imageResolver) ImagesOf(ctx context.Context, digest string) ([]plugin.Image, error) {
	imgs, err := a.r.ImagesOf(ctx, digest)
	out := make([]plugin.Image, len(imgs))
	for i, img := range imgs {
		out[i] = pluginImage(img)
	}
	return out, err
}

// pluginImage is img as the plugin names it (it has no re-point time: Bind
// uses that before).
func pluginImage(img resolve.Image) plugin.Image {
	return plugin.Image{Name: img.Name, Digest: img.Digest, ConfigDigest: img.ConfigDigest}
}
