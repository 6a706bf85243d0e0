// Package plugin is the NRI side of the verifier: it registers with the
// container runtime as an NRI plugin, turns each container about to be
// created into a gate.Input, asks a Decider within the runtime's deadline and
// refuses the container when the answer is not an allow. It knows nothing of
// policies or signatures (see gate) nor of how decisions are recorded (see
// report).
package plugin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"sync/atomic"
	"time"

	"github.com/containerd/nri/pkg/api"

	"github.com/nri-image-verifier/nri-image-verifier/gate"
)

// Defaults for Config fields left zero.
const (
	DefaultName    = "nri-image-verifier"
	DefaultIndex   = "10"
	DefaultSocket  = api.DefaultSocketPath
	DefaultTimeout = 1500 * time.Millisecond
	DefaultMargin  = 200 * time.Millisecond
)

// Decider answers whether a container's image may run. It must return by the
// deadline of ctx; when it cannot finish in time it returns a Decision with
// Pending set.
type Decider interface {
	Decide(ctx context.Context, in gate.Input) gate.Decision
}

// CachedDecider is a Decider that can answer from memory, at once and
// without blocking, when it has the answer (gate.Gate does when the verdict
// is cached). The plugin asks it first and skips the deadline machinery
// (a goroutine, a timer) that guards the Decider; ok false means it must
// ask Decide. Its decisions must be exactly Decide's.
type CachedDecider interface {
	DecideCached(in gate.Input) (d gate.Decision, ok bool)
}

// Reporter records a decision. It is called once per container decision,
// synchronously on the NRI request path, which the runtime serialises for
// the whole node: it must queue and return, never wait on the network.
type Reporter interface {
	Report(in gate.Input, d gate.Decision)
}

// Resolver finds an image's name and digests when the runtime did not send
// them (containerd before 2.4 does not fill Container.Image): ref is the CRI
// image-name annotation, a name or a bare image ID. It must also check that
// the container (containerID) runs that image: the record it reads may have
// changed since the runtime read it. The daemon adapts containerd/resolve,
// which asks containerd's image store and snapshots; without a Resolver
// such containers are decided with an empty Digest, which the gate denies.
//
// Lookup reads the record named ref and no more: the caller binds the
// answer itself (see prefer).
type Resolver interface {
	Resolve(ctx context.Context, containerID, ref string) (Image, error)
	Lookup(ctx context.Context, ref string) (Image, error)
}

// ImageStore names the image of an image volume, whose mount carries only
// the image's digest: it returns every name the runtime's image store holds
// for that target digest, with the digests of each record. The daemon adapts
// containerd/resolve. Without an ImageStore a container with an image
// volume is refused.
//
// CheckVolume checks that the volume mounted from dir (ImageVolume.Dir) is
// made of configDigest's layers: the runtime names the folder from one read
// of the image record and unpacks from another.
type ImageStore interface {
	ImagesOf(ctx context.Context, digest string) ([]Image, error)
	CheckVolume(ctx context.Context, dir, configDigest string) error
}

// Image is what a Resolver found: a name the policy can match (it replaces
// a bare image ID) and the digests the runtime's image record holds.
type Image struct {
	Name         string
	Digest       string
	ConfigDigest string
}

// Config configures a Plugin. Zero fields take the defaults above.
type Config struct {
	// Name is the plugin name registered with NRI; the default validator's
	// required_plugins must list it for the gate to fail closed.
	Name string
	// Index orders the plugin among the runtime's plugins ("00".."99").
	Index string
	// Socket is the runtime's NRI socket.
	Socket string
	// Timeout bounds one decision, whatever the runtime's deadline.
	Timeout time.Duration
	// Margin is kept free before the runtime's deadline to return the
	// answer; a late answer makes the runtime drop the plugin.
	Margin time.Duration
	// Resolver, if set, fills in the digests the runtime did not send.
	Resolver Resolver
	// Images, if set, names the images of image volumes; without it a
	// container with an image volume is refused.
	Images ImageStore
	// CRIStateDir is containerd's CRI state directory (absolute), which
	// image volumes are mounted from; "" means DefaultCRIStateDir.
	CRIStateDir string
	// Logger receives connection events and the NRI stub's own messages.
	Logger *slog.Logger
}

// Plugin is the NRI plugin. Create it with New, then call Run.
type Plugin struct {
	cfg      Config
	decider  Decider
	reporter Reporter
	log      *slog.Logger
	memo     *memo
	prefs    prefMemo
	// volBase is where image volumes are mounted from (CRIStateDir's).
	volBase string

	running   atomic.Bool
	connected atomic.Bool
	// sessions counts completed synchronisations, so Run can tell a lost
	// connection (reset the backoff) from a failed attempt (back off more).
	sessions atomic.Uint64
	// runtime is "name/version" of the runtime that configured us, for logs.
	runtime atomic.Value
}

// New checks cfg, fills in defaults and returns a Plugin that is not yet
// connected.
func New(cfg Config, decider Decider, reporter Reporter) (*Plugin, error) {
	if decider == nil {
		return nil, errors.New("plugin: nil Decider")
	}
	if reporter == nil {
		return nil, errors.New("plugin: nil Reporter")
	}
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	if cfg.Index == "" {
		cfg.Index = DefaultIndex
	}
	if cfg.Socket == "" {
		cfg.Socket = DefaultSocket
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Margin == 0 {
		cfg.Margin = DefaultMargin
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.CRIStateDir == "" {
		cfg.CRIStateDir = DefaultCRIStateDir
	}
	// A relative or unclean directory would never prefix a mount source,
	// and image volumes would then all be refused as look-alikes.
	if !path.IsAbs(cfg.CRIStateDir) || path.Clean(cfg.CRIStateDir) != cfg.CRIStateDir {
		return nil, fmt.Errorf("plugin: CRI state directory %q must be an absolute, clean path", cfg.CRIStateDir)
	}
	// Checked here because the stub would only reject them at connect time,
	// inside the retry loop, where a typo would look like a missing runtime.
	if err := api.CheckPluginName(cfg.Name); err != nil {
		return nil, fmt.Errorf("plugin: %w", err)
	}
	if err := api.CheckPluginIndex(cfg.Index); err != nil {
		return nil, fmt.Errorf("plugin: %w", err)
	}
	if cfg.Timeout < 0 || cfg.Margin < 0 {
		return nil, fmt.Errorf("plugin: negative timeout %v or margin %v", cfg.Timeout, cfg.Margin)
	}
	return &Plugin{
		cfg:      cfg,
		decider:  decider,
		reporter: reporter,
		log:      cfg.Logger.With("component", "plugin"),
		memo:     newMemo(memoCap, memoTTL),
		volBase:  volumesBase(cfg.CRIStateDir),
	}, nil
}

// Connected reports whether the plugin is registered with a runtime and
// synchronised, i.e. whether containers are being checked. For readiness.
func (p *Plugin) Connected() bool {
	return p.connected.Load()
}
