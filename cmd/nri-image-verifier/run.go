package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"k8s.io/klog/v2"

	"github.com/nri-image-verifier/nri-image-verifier/gate"
	"github.com/nri-image-verifier/nri-image-verifier/plugin"
	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/nri-image-verifier/nri-image-verifier/report"
	"github.com/nri-image-verifier/nri-image-verifier/report/events"
	"github.com/nri-image-verifier/nri-image-verifier/verify/validators"
)

// runCmd is the node daemon: it connects to containerd's NRI socket and
// decides on every container creation until SIGINT or SIGTERM.
func runCmd(args []string, stderr io.Writer) int {
	f, code := parseRunFlags(args, stderr)
	if f == nil {
		return code
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: f.level}))
	f.plugin.Logger = log
	setMemoryLimit(log, memlimit.FromCgroup)

	d, err := newDaemon(f, log)
	defer d.close()
	if err != nil {
		logStartError(log, err)
		return exitDeny
	}
	// Installed after the build, as it always was: a signal during the
	// build still ends the process at once.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := d.start(ctx); err != nil {
		logStartError(log, err)
		return exitDeny
	}
	return d.run(ctx)
}

// runFlags are run's flags, parsed and checked.
type runFlags struct {
	verifier   verifierFlags
	plugin     plugin.Config
	containerd string // containerd's gRPC socket; "" turns resolution and prewarm off
	auditPath  string
	node       string
	level      slog.Level
	events     bool
	kubeconfig string
	httpAddr   string
	prewarm    bool
}

// parseRunFlags parses run's arguments. On a usage error it has told stderr
// why and returns nil and the exit code.
func parseRunFlags(args []string, stderr io.Writer) (*runFlags, int) {
	f := &runFlags{}
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f.verifier.register(fs)
	pc := &f.plugin
	fs.StringVar(&pc.Socket, "nri-socket", plugin.DefaultSocket, "containerd's NRI socket")
	fs.StringVar(&pc.Name, "plugin-name", plugin.DefaultName, "NRI plugin name (list it in containerd's required_plugins)")
	fs.StringVar(&pc.Index, "plugin-index", plugin.DefaultIndex, "NRI plugin index (two digits; orders plugins)")
	fs.DurationVar(&pc.Timeout, "decision-timeout", plugin.DefaultTimeout, "longest a container create waits for a verdict; keep it below containerd's plugin_request_timeout")
	fs.DurationVar(&pc.Margin, "deadline-margin", plugin.DefaultMargin, "time kept before the NRI request deadline to send the answer")
	fs.StringVar(&f.containerd, "containerd-socket", "/run/containerd/containerd.sock",
		`containerd's socket: the image store that names image volumes' images, and the digest fallback when the runtime does not send it through NRI (containerd < 2.4); "" turns both off (containers with image volumes are then refused)`)
	fs.StringVar(&pc.CRIStateDir, "cri-state-dir", plugin.DefaultCRIStateDir,
		"containerd's CRI state_dir: image volumes are mounted from its image-volumes/ directory, and each is verified")
	fs.StringVar(&f.auditPath, "audit-log", "-", `where JSON audit lines go: a file (appended) or "-" for stdout`)
	fs.StringVar(&f.node, "node-name", os.Getenv("NODE_NAME"), "node name in audit lines (default $NODE_NAME, else the host name)")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	fs.BoolVar(&f.events, "events", true, "record a Kubernetes Event on the Pod for every refusal and audit-mode would-be refusal")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig of the API server that receives Events (default: the pod's service account, when running in a cluster)")
	fs.StringVar(&f.httpAddr, "http-addr", "", `address serving /metrics, /healthz and /readyz, e.g. ":9797" ("" turns it off)`)
	fs.BoolVar(&f.prewarm, "prewarm", false, "verify images as containerd pulls them (its image events on --containerd-socket), and those it already holds at start, so that container creation finds the verdict cached; the chain check then reads manifests from containerd's content store")
	if err := fs.Parse(args); err != nil {
		return nil, exitUsage
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(stderr, "run takes no arguments, got %q\n", fs.Args())
		return nil, exitUsage
	}
	if f.prewarm && f.containerd == "" {
		fmt.Fprintln(stderr, "--prewarm needs --containerd-socket")
		return nil, exitUsage
	}
	if d := pc.CRIStateDir; !filepath.IsAbs(d) || filepath.Clean(d) != d {
		// Mount sources are absolute and clean; another form would never
		// prefix one, and every image volume would be refused.
		fmt.Fprintf(stderr, "--cri-state-dir %q: want an absolute, clean path\n", d)
		return nil, exitUsage
	}
	if err := f.level.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintf(stderr, "--log-level: %v\n", err)
		return nil, exitUsage
	}
	return f, exitOK
}

// watchPolicy reloads the policy when its file changes. A new version that
// does not load or build is rejected and the last good one stays in force.
func watchPolicy(ctx context.Context, path string, g *gate.Gate, m *report.Metrics, log *slog.Logger) {
	err := policy.Watch(ctx, path, validators.Check,
		func(p *policy.Policy) {
			if p.Version == g.Policy().Version {
				return // the watch's first read, or a touch without change
			}
			if err := g.SetPolicy(p); err != nil {
				m.PolicyReload(err)
				log.Error("policy reload rejected; keeping the last good policy", "policy", path, "error", err.Error())
				return
			}
			m.PolicyReload(nil)
			warn(log, p)
			log.Info("policy reloaded", "policy", path, "policy_version", p.Version)
		},
		func(err error) {
			m.PolicyReload(err)
			log.Error("policy reload rejected; keeping the last good policy", "policy", path,
				"policy_version", g.Policy().Version, "error", err.Error())
		})
	if err != nil && ctx.Err() == nil {
		log.Error("policy watch stopped; reloads are off until restart", "policy", path, "error", err.Error())
	}
}

func openAudit(path string) (io.Writer, func() error, error) {
	if path == "-" {
		return os.Stdout, func() error { return nil }, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600) // #nosec G304 -- the operator's --audit-log path; the daemon is meant to write there.
	if err != nil {
		return nil, nil, err
	}
	return f, f.Close, nil
}

// warn logs the policy settings that load but have no effect here, and the
// patterns that match more than they seem to.
func warn(log *slog.Logger, p *policy.Policy) {
	for _, w := range p.Warnings() {
		log.Warn("policy warning", "warning", w)
	}
}

// startEvents connects the Event recorder to the API server, or returns nil
// after one log line when there is no API to talk to: refusals are then
// still enforced and in the audit log.
func startEvents(ctx context.Context, kubeconfig, node string, m *report.Metrics, log *slog.Logger) *events.Recorder {
	ev, host, err := newEvents(ctx, kubeconfig, node, m, log)
	switch {
	case errors.Is(err, events.ErrNoAPI):
		log.Info("Kubernetes Events are off", "reason", err.Error())
	case err != nil:
		log.Error("Kubernetes Events are off; containers are still checked", "error", err.Error())
	default:
		log.Info("recording Kubernetes Events", "api", host, "node", node)
	}
	return ev
}

func newEvents(ctx context.Context, kubeconfig, node string, m *report.Metrics, log *slog.Logger) (*events.Recorder, string, error) {
	cfg, err := events.RESTConfig(kubeconfig)
	if err != nil {
		return nil, "", err
	}
	// client-go logs through klog; send it to our JSON log.
	klog.SetSlogLogger(log.With("component", "client-go"))
	sink, err := events.NewSink(cfg)
	if err != nil {
		return nil, "", err
	}
	ev, err := events.New(events.Config{Sink: sink, Node: node, Metrics: m, Logger: log})
	if err != nil {
		return nil, "", err
	}
	if err := ev.Start(ctx); err != nil {
		return nil, "", fmt.Errorf("events: %w", err)
	}
	return ev, cfg.Host, nil
}
