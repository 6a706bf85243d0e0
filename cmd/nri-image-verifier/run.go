package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/nri-image-verifier/nri-image-verifier/gate"
	"github.com/nri-image-verifier/nri-image-verifier/plugin"
	"github.com/nri-image-verifier/nri-image-verifier/plugin/resolve"
	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/nri-image-verifier/nri-image-verifier/report"
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
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(stderr, "run takes no arguments, got %q\n", fs.Args())
		return exitUsage
	}

	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintf(stderr, "--log-level: %v\n", err)
		return exitUsage
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	pc.Logger = log

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
	defer closeAudit()
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
	p, err := plugin.New(pc, g, report.NewAudit(auditW, *node))
	if err != nil {
		log.Error("cannot start", "error", err.Error())
		return exitDeny
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go watchPolicy(ctx, vf.policy, g, log)
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
func watchPolicy(ctx context.Context, path string, g *gate.Gate, log *slog.Logger) {
	err := policy.Watch(ctx, path,
		func(p *policy.Policy) {
			if p.Version == g.Policy().Version {
				return // the watch's first read, or a touch without change
			}
			if err := g.SetPolicy(p); err != nil {
				log.Error("policy reload rejected; keeping the last good policy", "policy", path, "error", err.Error())
				return
			}
			warn(log, p)
			log.Info("policy reloaded", "policy", path, "policy_version", p.Version)
		},
		func(err error) {
			log.Error("policy reload rejected; keeping the last good policy", "policy", path,
				"policy_version", g.Policy().Version, "error", err.Error())
		})
	if err != nil && ctx.Err() == nil {
		log.Error("policy watch stopped; reloads are off until restart", "policy", path, "error", err.Error())
	}
}

func openAudit(path string) (io.Writer, func(), error) {
	if path == "-" {
		return os.Stdout, func() {}, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, err
	}
	return f, func() { f.Close() }, nil
}

// warn logs the policy settings that load but have no effect here.
func warn(log *slog.Logger, p *policy.Policy) {
	for _, w := range p.Warnings() {
		log.Warn("policy setting has no effect", "warning", w)
	}
}
