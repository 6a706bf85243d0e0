package plugin

import (
	"context"
	"time"

	"github.com/containerd/nri/pkg/api"

	"github.com/nri-image-verifier/nri-image-verifier/gate"
)

// CreateContainer decides on the container before the runtime creates it.
// An error refuses the container; the runtime shows its message to kubelet.
func (p *Plugin) CreateContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	return nil, nil, p.check(ctx, pod, ctr)
}

// ValidateContainerAdjustment makes the plugin a validator: the runtime
// calls it after every plugin has adjusted the container, and any error or
// timeout there rejects the container, whatever the failure policy. It
// normally repeats the CreateContainer decision without deciding or
// reporting again; it decides afresh only if that decision is not
// remembered (we connected in between, or it was evicted).
func (p *Plugin) ValidateContainerAdjustment(ctx context.Context, req *api.ValidateContainerAdjustmentRequest) error {
	return p.check(ctx, req.GetPod(), req.GetContainer())
}

// check returns nil to allow the container and an error to refuse it. The
// first call for a container decides and reports; later ones reuse that.
func (p *Plugin) check(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	start := time.Now()
	key := Identity(pod, ctr)
	vols, verr := imageVolumesUnder(p.volBase, pod.GetId(), ctr.GetMounts())
	e, owner := p.memo.claim(ctr.GetId(), memoKey{Input: key, volumes: volumesKey(vols, verr)}, start)
	if owner {
		final, volumes := p.decideContainer(ctx, key, vols, verr, start)
		// Published before reporting, as always: a waiting request for
		// the container need not wait on the reporters.
		e.complete(final.in, final.d)
		p.reporter.Report(final.ctr.in, final.ctr.d)
		for _, j := range volumes {
			p.reporter.Report(j.in, j.d)
		}
		return verdictError(final.in, final.d)
	}

	// Another request for this container is deciding (NRI serialises
	// requests, so only in theory) or has decided: wait within our budget.
	select {
	case <-e.done:
		return verdictError(e.in, e.d)
	default:
	}
	wctx, cancel := budget(ctx, start, p.cfg.Timeout, p.cfg.Margin)
	defer cancel()
	select {
	case <-e.done:
		return verdictError(e.in, e.d)
	case <-wctx.Done():
		return pendingError(key, "", "the decision for this container is not ready yet")
	}
}

// decideContainer decides on every image whose content the container
// gets: its own image and each image volume's, side by side within one
// budget (on a cold node each needs its own verification; one after the
// other they would cost the pod a retry more). It returns the decision
// that answers the runtime (the container image's refusal, else the first
// volume's, else the container image's allow), with the container image's
// own decision, and the volumes' decisions: all are to be reported.
func (p *Plugin) decideContainer(ctx context.Context, key gate.Input, vols []ImageVolume, verr error, start time.Time) (outcome, []judged) {
	if len(vols) == 0 && verr == nil {
		in, d := p.ask(ctx, key, start)
		return outcome{judged{in, d}, judged{in, d}}, nil
	}
	vc := make(chan []judged, 1)
	go func() { vc <- p.judgeVolumes(ctx, key, vols, verr, start) }()
	in, d := p.ask(ctx, key, start)
	ctr := judged{in, d}
	// judgeVolumes returns by the budget, as ask does.
	js := <-vc
	if last := js[len(js)-1]; d.Allowed && !last.d.Allowed {
		return outcome{last, ctr}, js
	}
	return outcome{ctr, ctr}, js
}

// outcome is a container's answer: the decision that settles it, and its
// own image's decision (the same one unless a volume refused).
type outcome struct {
	judged
	ctr judged
}

// ask resolves missing digests and asks the Decider, all within the
// budget (see within).
func (p *Plugin) ask(ctx context.Context, in gate.Input, start time.Time) (gate.Input, gate.Decision) {
	// The common case, a verdict in the cache, is answered at once: no
	// deadline to enforce on an answer that cannot block.
	in, lookup := p.preferred(in)
	if c, ok := p.decider.(CachedDecider); ok && !p.needsResolve(in) && !lookup {
		if d, ok := c.DecideCached(in); ok {
			return in, d
		}
	}
	r, ok := within(ctx, p, start, func(dctx context.Context) judged {
		in := in
		if lookup {
			in = p.prefer(dctx, in)
		} else {
			in = p.resolve(dctx, in)
		}
		return judged{in, p.decider.Decide(dctx, in)}
	})
	if !ok {
		return in, p.late(in, start)
	}
	return r.in, r.d
}

// judged is one image's decision and the identity it was made on.
type judged struct {
	in gate.Input
	d  gate.Decision
}

// within runs fn under the decision budget. It does not trust fn to return
// on time: a request that overruns the runtime's deadline gets the plugin
// dropped, and the runtime then creates containers without us. So it stops
// waiting a little after the budget and returns ok false (deny as pending);
// a late answer is discarded.
func within[T any](ctx context.Context, p *Plugin, start time.Time, fn func(context.Context) T) (T, bool) {
	dctx, cancel := budget(ctx, start, p.cfg.Timeout, p.cfg.Margin)
	defer cancel()
	res := make(chan T, 1)
	go func() { res <- fn(dctx) }()

	select {
	case r := <-res:
		return r, true
	case <-dctx.Done():
	}
	// The Decider should now be returning Pending; give it half the margin
	// to do so, which still leaves time to answer the runtime.
	grace := time.NewTimer(p.cfg.Margin / 2)
	defer grace.Stop()
	select {
	case r := <-res:
		return r, true
	case <-grace.C:
	case <-ctx.Done():
	}
	var zero T
	return zero, false
}

// late is the pending deny of an image whose decision did not come back
// within the budget.
func (p *Plugin) late(in gate.Input, start time.Time) gate.Decision {
	p.log.Warn("decider did not return by its deadline; denying", "image", in.Image, "digest", in.Digest,
		"volume", in.Volume, "namespace", in.Namespace, "pod", in.Pod, "container", in.Container)
	return gate.Decision{
		Verdict: gate.VerdictDeny,
		Pending: true,
		Reason:  "no decision within " + time.Since(start).Round(time.Millisecond).String(),
		Image:   in.Image,
		Latency: time.Since(start),
	}
}

// resolve fills in the digests the runtime did not send, if a Resolver is
// configured. On failure the digest stays empty and the gate denies.
func (p *Plugin) resolve(ctx context.Context, in gate.Input) gate.Input {
	if !p.needsResolve(in) {
		return in
	}
	img, err := p.cfg.Resolver.Resolve(ctx, in.ContainerID, in.Image)
	if err != nil {
		p.log.Warn("cannot resolve image digest", "image", in.Image, "error", err)
		in.DigestError = err.Error()
		return in
	}
	// The resolved name replaces a bare image ID, so that the rule for the
	// image's repository applies.
	in.Image, in.Digest, in.ConfigDigest = img.Name, img.Digest, img.ConfigDigest
	return in
}

// needsResolve says whether resolve would ask the Resolver.
func (p *Plugin) needsResolve(in gate.Input) bool {
	return in.Digest == "" && in.Image != "" && p.cfg.Resolver != nil
}

// budget derives the decision context: it ends Margin before the runtime's
// deadline, so the answer arrives in time, and no later than Timeout from
// start, so one slow image cannot hold the node's serialised NRI requests
// for the whole runtime timeout.
func budget(ctx context.Context, start time.Time, timeout, margin time.Duration) (context.Context, context.CancelFunc) {
	deadline := start.Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Add(-margin).Before(deadline) {
		deadline = d.Add(-margin)
	}
	return context.WithDeadline(ctx, deadline)
}
