package plugin

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
)

// Reconnect backoff: containerd restarts take seconds, so the cap keeps the
// gap after a restart short without spinning while the socket is absent.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// Run connects to the runtime and serves its requests until ctx is done,
// reconnecting with exponential backoff whenever the connection cannot be
// made or is lost (a runtime restart closes it). It returns nil once ctx is
// done, and an error only for a failure no retry can fix.
func (p *Plugin) Run(ctx context.Context) error {
	if !p.running.CompareAndSwap(false, true) {
		return errors.New("plugin: Run called twice")
	}
	defer p.running.Store(false)

	delay := minBackoff
	failing := false
	for {
		before := p.sessions.Load()
		err := p.runOnce(ctx)
		p.connected.Store(false)
		if ctx.Err() != nil {
			return nil
		}
		var perm permanentError
		if errors.As(err, &perm) {
			return perm.err
		}
		switch {
		case p.sessions.Load() != before:
			// We were connected (onClose logged the loss): a fresh outage,
			// so retry quickly.
			delay, failing = minBackoff, false
			p.log.Debug("NRI connection ended, reconnecting", "socket", p.cfg.Socket, "error", err)
		case !failing:
			p.log.Warn("cannot connect to NRI runtime, retrying", "socket", p.cfg.Socket, "error", err)
			failing = true
		default:
			p.log.Debug("NRI connection attempt failed", "socket", p.cfg.Socket, "error", err, "retry_in", delay)
		}

		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		delay = min(2*delay, maxBackoff)
	}
}

// permanentError marks a failure that retrying cannot fix.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }

// runOnce makes one connection and serves it until it is lost or ctx is
// done. A new stub each time: a stub's state after a lost connection is not
// meant to be reused across runtimes.
func (p *Plugin) runOnce(ctx context.Context) error {
	s, err := stub.New(p,
		stub.WithPluginName(p.cfg.Name),
		stub.WithPluginIdx(p.cfg.Index),
		stub.WithSocketPath(p.cfg.Socket),
		stub.WithOnClose(p.onClose),
		stub.WithLogger(nriLogger{p.log}),
		// A runtime whose NRI knows failure policies then fails the
		// container instead of creating it without us when we time out or
		// die during a request. The required_plugins check alone misses
		// that case: NRI lists us as consulted before it sends the request.
		// Older runtimes ignore the policy.
		stub.WithFailurePolicy(&api.FailurePolicy{FailRequest: true}),
	)
	if err != nil {
		return permanentError{fmt.Errorf("plugin: create NRI stub: %w", err)}
	}
	if err := s.Run(ctx); err != nil {
		return fmt.Errorf("plugin: NRI connection: %w", err)
	}
	return errors.New("plugin: NRI connection ended")
}

// onClose runs when the runtime side of the connection goes away; the stub
// then stops and Run reconnects.
func (p *Plugin) onClose() {
	if p.connected.Swap(false) {
		p.log.Warn("NRI runtime disconnected", "socket", p.cfg.Socket)
	}
}

// Configure records which runtime we talk to; returning 0 subscribes to
// every event we have a handler for.
func (p *Plugin) Configure(_ context.Context, _, runtime, version string) (api.EventMask, error) {
	p.runtime.Store(runtime + "/" + version)
	return 0, nil
}

// Synchronize is the last step of registration: once it returns the runtime
// sends us container requests. The existing pods and containers are not
// checked (they were created before us; blocking their sync would only make
// the runtime drop the plugin), so it never fails.
func (p *Plugin) Synchronize(_ context.Context, pods []*api.PodSandbox, ctrs []*api.Container) ([]*api.ContainerUpdate, error) {
	p.sessions.Add(1)
	p.connected.Store(true)
	rt, _ := p.runtime.Load().(string)
	p.log.Info("connected to NRI runtime", "socket", p.cfg.Socket, "runtime", rt,
		"plugin", p.cfg.Index+"-"+p.cfg.Name, "pods", len(pods), "containers", len(ctrs))
	return nil, nil
}
