package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"k8s.io/klog/v2"

	"github.com/nri-image-verifier/nri-image-verifier/gate"
	"github.com/nri-image-verifier/nri-image-verifier/plugin"
	"github.com/nri-image-verifier/nri-image-verifier/plugin/prewarm"
	"github.com/nri-image-verifier/nri-image-verifier/plugin/resolve"
	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/nri-image-verifier/nri-image-verifier/report"
	"github.com/nri-image-verifier/nri-image-verifier/verify/validators"
)

// runCmd is the node daemon: it connects to containerd's NRI socket and
// decides on every container creation until SIGINT or SIGTERM.
func runCmd(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var vf verifierFlags
	vf.register(fs)
	var pc plugin.Config
	fs.StringVar(&pc.Socket, "nri-socket", plugin.DefaultSocket, "containerd's NRI socket")
	fs.StringVar(&pc.Name, "plugin-name", plugin.DefaultName, "NRI plugin name (list it in containerd's required_plugins)")
	fs.StringVar(&pc.Index, "plugin-index", plugin.DefaultIndex, "NRI plugin index (two digits; orders plugins)")
	fs.DurationVar(&pc.Timeout, "decision-timeout", plugin.DefaultTimeout, "longest a container create waits for a verdict; keep it below containerd's plugin_request_timeout")
	fs.DurationVar(&pc.Margin, "deadline-margin", plugin.DefaultMargin, "time kept before the NRI request deadline to send the answer")
	ctrdSocket := fs.String("containerd-socket", "/run/containerd/containerd.sock",
		`containerd's socket, used only when the runtime does not send the image digest through NRI (containerd < 2.4); "" turns that fallback off`)
	auditPath := fs.String("audit-log", "-", `where JSON audit lines go: a file (appended) or "-" for stdout`)
	node := fs.String("node-name", os.Getenv("NODE_NAME"), "node name in audit lines (default $NODE_NAME, else the host name)")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	events := fs.Bool("events", true, "record a Kubernetes Event on the Pod for every refusal and audit-mode would-be refusal")
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig of the API server that receives Events (default: the pod's service account, when running in a cluster)")
	httpAddr := fs.String("http-addr", "", `address serving /metrics, /healthz and /readyz, e.g. ":9797" ("" turns it off)`)
	prewarmImages := fs.Bool("prewarm", false, "verify images as containerd pulls them (its image events on --containerd-socket), and those it already holds at start, so that container creation finds the verdict cached; the chain check then reads manifests from containerd's content store")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(stderr, "run takes no arguments, got %q\n", fs.Args())
		return exitUsage
	}
	if *prewarmImages && *ctrdSocket == "" {
		fmt.Fprintln(stderr, "--prewarm needs --containerd-socket")
		return exitUsage
	}

	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintf(stderr, "--log-level: %v\n", err)
		return exitUsage
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	pc.Logger = log

	metrics := report.NewMetrics()
	vf.metrics = metrics
	var (
		local *resolve.Resolver
		err   error
	)
	if *prewarmImages {
		// containerd's image store: what prewarm verifies, and the
		// manifests the chain check then reads without a registry request.
		if local, err = resolve.New(*ctrdSocket, resolve.Namespace); err != nil {
			log.Error("cannot start", "error", err.Error())
			return exitDeny
		}
		defer local.Close()
		vf.local = local
	}
	g, _, err := vf.build()
	if err != nil {
		log.Error("cannot start", "error", err.Error())
		return exitDeny
	}
	auditW, closeAudit, err := openAudit(*auditPath)
	if err != nil {
		log.Error("cannot open audit log", "error", err.Error())
		return exitDeny
	}
	defer func() {
		if err := closeAudit(); err != nil {
			log.Error("closing the audit log", "error", err.Error())
		}
	}()
	if *node == "" {
		*node, _ = os.Hostname()
	}
	if *ctrdSocket != "" {
		r, err := resolve.New(*ctrdSocket, resolve.Namespace)
		if err != nil {
			log.Error("cannot start", "error", err.Error())
			return exitDeny
		}
		defer r.Close()
		pc.Resolver = r
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	reporters := report.Tee{report.NewAudit(auditW, *node), metrics}
	if *events {
		if ev := startEvents(ctx, *kubeconfig, *node, metrics, log); ev != nil {
			defer ev.Close()
			reporters = append(reporters, ev)
		}
	}
	p, err := plugin.New(pc, g, reporters)
	if err != nil {
		log.Error("cannot start", "error", err.Error())
		return exitDeny
	}
	metrics.WatchNRI(p.Connected)
	if *httpAddr != "" {
		ready := func() error {
			if !p.Connected() {
				return errors.New("not registered with the container runtime over NRI")
			}
			if g.Policy() == nil {
				return errors.New("no policy loaded")
			}
			return nil
		}
		if err := serveHTTP(ctx, *httpAddr, report.Handler(metrics, ready), log); err != nil {
			log.Error("cannot start", "error", err.Error())
			return exitDeny
		}
	}

	go watchPolicy(ctx, vf.policy, g, metrics, log)
	if *prewarmImages {
		go prewarm.Run(ctx, prewarm.Config{Socket: *ctrdSocket, Namespace: resolve.Namespace, Resolver: local, Existing: true, Logger: log}, g)
	}
	warn(log, g.Policy())
	log.Info("nri-image-verifier starting", "policy", vf.policy, "policy_version", g.Policy().Version,
		"nri_socket", pc.Socket, "plugin", pc.Index+"-"+pc.Name)
	if err := p.Run(ctx); err != nil {
		log.Error("plugin stopped", "error", err.Error())
		return exitDeny
	}
	log.Info("nri-image-verifier stopped")
	return exitOK
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

// warn logs the policy settings that load but have no effect here.
func warn(log *slog.Logger, p *policy.Policy) {
	for _, w := range p.Warnings() {
		log.Warn("policy setting has no effect", "warning", w)
	}
}

// startEvents connects the Event recorder to the API server, or returns nil
// after one log line when there is no API to talk to: refusals are then
// still enforced and in the audit log.
func startEvents(ctx context.Context, kubeconfig, node string, m *report.Metrics, log *slog.Logger) *report.Events {
	ev, host, err := newEvents(ctx, kubeconfig, node, m, log)
	switch {
	case errors.Is(err, report.ErrNoAPI):
		log.Info("Kubernetes Events are off", "reason", err.Error())
	case err != nil:
		log.Error("Kubernetes Events are off; containers are still checked", "error", err.Error())
	default:
		log.Info("recording Kubernetes Events", "api", host, "node", node)
	}
	return ev
}

func newEvents(ctx context.Context, kubeconfig, node string, m *report.Metrics, log *slog.Logger) (*report.Events, string, error) {
	cfg, err := report.RESTConfig(kubeconfig)
	if err != nil {
		return nil, "", err
	}
	// client-go logs through klog; send it to our JSON log.
	klog.SetSlogLogger(log.With("component", "client-go"))
	sink, err := report.NewEventSink(cfg)
	if err != nil {
		return nil, "", err
	}
	ev, err := report.NewEvents(report.EventsConfig{Sink: sink, Node: node, Metrics: m, Logger: log})
	if err != nil {
		return nil, "", err
	}
	if err := ev.Start(ctx); err != nil {
		return nil, "", fmt.Errorf("events: %w", err)
	}
	return ev, cfg.Host, nil
}

// serveHTTP listens on addr now, so that a taken port fails the start, and
// serves h until ctx is done.
func serveHTTP(ctx context.Context, addr string, h http.Handler, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--http-addr: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("HTTP server stopped", "addr", addr, "error", err.Error())
		}
	}()
	go func() { // #nosec G118 -- shuts the server down once ctx is done, so the shutdown cannot use ctx; it has its own 2 s bound.
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("serving metrics and health", "addr", ln.Addr().String())
	return nil
}
