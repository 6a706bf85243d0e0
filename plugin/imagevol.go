package plugin

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nri-image-verifier/nri-image-verifier/gate"
)

// maxVolumeNames bounds the names one image volume's digest is checked
// under. Names that meet one rule share its verdict, so the cost is bounded
// by the policy anyway; past this many, something is pulling look-alikes.
const maxVolumeNames = 64

// noImageStore says how to let the plugin name image volumes.
const noImageStore = "the image of an image volume can be named only from containerd's image store, " +
	"and the verifier has no connection to it: set --containerd-socket (chart value containerdFallback.enabled=true)"

// judgeVolumes decides on each image volume of container ctr, one
// decision per volume, all under one budget (every volume's within would
// each wait a grace period past it). It stops at the first refusal, which
// is then the last element; a volume still undecided at the deadline gets a
// pending deny.
func (p *Plugin) judgeVolumes(ctx context.Context, ctr gate.Input, vols []ImageVolume, verr error, start time.Time) []judged {
	base := gate.Input{Namespace: ctr.Namespace, Pod: ctr.Pod, PodUID: ctr.PodUID, Container: ctr.Container, ContainerID: ctr.ContainerID}
	if verr != nil {
		in := base
		var me *MountError
		if errors.As(verr, &me) {
			in.Volume = me.Destination
		}
		return []judged{{in, refuse("cannot tell which image this mount holds: " + verr.Error())}}
	}
	input := func(v ImageVolume) gate.Input {
		in := base
		in.Volume, in.Digest = v.Destination, v.Digest
		return in
	}
	var (
		mu   sync.Mutex
		done []judged
	)
	_, ok := within(ctx, p, start, func(dctx context.Context) struct{} {
		for _, v := range vols {
			j := p.judgeVolume(dctx, input(v), v.Dir)
			mu.Lock()
			done = append(done, j)
			mu.Unlock()
			if !j.d.Allowed {
				break
			}
		}
		return struct{}{}
	})
	mu.Lock()
	out := slices.Clone(done)
	mu.Unlock()
	if !ok && len(out) < len(vols) && (len(out) == 0 || out[len(out)-1].d.Allowed) {
		in := input(vols[len(out)])
		out = append(out, judged{in, p.late(in, start)})
	}
	return out
}

// judgeVolume decides on one image volume, in (its digest and
// destination known), under the rules of the names containerd's image
// store holds for the digest. The content is the digest's, whatever the
// name, so the volume is allowed when one name's rule allows it: that is
// content the policy trusts under that name (rules are matched in the
// pod's namespace), as a pod naming it would run. Requiring every name to
// pass let any tenant deny another's volume by pulling a copy of it into
// its own repository, where it has no signature. The names are taken in a
// fixed order, so the decision is always the same: the first allow, else
// the first audit-mode would-be refusal, else the first still running,
// else the first refusal.
func (p *Plugin) judgeVolume(ctx context.Context, in gate.Input, dir string) judged {
	if p.cfg.Images == nil {
		return judged{in, refuse(noImageStore)}
	}
	imgs, err := p.cfg.Images.ImagesOf(ctx, in.Digest)
	switch {
	case err != nil:
		return judged{in, refuse("cannot name the image from containerd's image store: " + err.Error())}
	case len(imgs) == 0:
		return judged{in, refuse("containerd's image store holds no name for this digest, so no policy rule can be chosen")}
	case len(imgs) > maxVolumeNames:
		return judged{in, refuse(fmt.Sprintf("containerd's image store holds %d names for this digest, more than the %d checked", len(imgs), maxVolumeNames))}
	}
	slices.SortFunc(imgs, func(a, b Image) int { return strings.Compare(a.Name, b.Name) })
	// One target, one config: what is verified below must be what is
	// mounted.
	if err := p.cfg.Images.CheckVolume(ctx, dir, imgs[0].ConfigDigest); err != nil {
		return judged{in, refuse("cannot tell that the mounted files are this image's: " + err.Error())}
	}
	for _, img := range imgs {
		if img.Digest != in.Digest || img.ConfigDigest != imgs[0].ConfigDigest {
			one := in
			one.Image, one.ConfigDigest = img.Name, img.ConfigDigest
			return judged{one, refuse(fmt.Sprintf("containerd's record %s has digest %s (config %s), not the volume's %s (config %s)",
				img.Name, img.Digest, img.ConfigDigest, in.Digest, imgs[0].ConfigDigest))}
		}
	}
	return p.decideNames(ctx, in, imgs)
}

// decideNames decides in under each of the names imgs (sorted) and
// returns the first allow, else the first audit-mode would-be refusal,
// else the first still running, else the first refusal. Verdicts in the
// cache come first; the rest are decided at once, side by side, so that a
// name on a slow registry (another tenant's copy in a tarpit) does not
// spend the budget of the others, and the first allow to arrive wins.
func (p *Plugin) decideNames(ctx context.Context, in gate.Input, imgs []Image) judged {
	all := make([]*judged, len(imgs))
	var todo []int
	for i, img := range imgs {
		one := in
		one.Image, one.ConfigDigest = img.Name, img.ConfigDigest
		all[i] = &judged{in: one}
		if c, ok := p.decider.(CachedDecider); ok {
			if d, ok := c.DecideCached(one); ok {
				if all[i].d = d; d.Allowed && d.Verdict == gate.VerdictAllow {
					return *all[i]
				}
				continue
			}
		}
		todo = append(todo, i)
	}
	dctx, cancel := context.WithCancelCause(ctx)
	defer cancel(gate.ErrAbandoned)
	allowed := make(chan int, len(todo))
	var wg sync.WaitGroup
	for _, i := range todo {
		wg.Go(func() {
			all[i].d = p.decider.Decide(dctx, all[i].in)
			if all[i].d.Allowed && all[i].d.Verdict == gate.VerdictAllow {
				allowed <- i
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case i := <-allowed:
		// The others answer pending at once and go on in the background,
		// not overdue: nobody waited for them in vain.
		cancel(gate.ErrAbandoned)
		<-done
		return *all[i]
	case <-done:
	}
	var audit, pending, refused *judged
	for _, j := range all {
		switch {
		case j.d.Allowed && j.d.Verdict == gate.VerdictAllow:
			return *j
		case j.d.Allowed:
			audit = cmp.Or(audit, j)
		case j.d.Pending:
			pending = cmp.Or(pending, j)
		default:
			refused = cmp.Or(refused, j)
		}
	}
	return *cmp.Or(audit, pending, refused)
}

// decideOne asks the Decider about one image, from its cache when it can.
func (p *Plugin) decideOne(ctx context.Context, in gate.Input) gate.Decision {
	if c, ok := p.decider.(CachedDecider); ok {
		if d, ok := c.DecideCached(in); ok {
			return d
		}
	}
	return p.decider.Decide(ctx, in)
}

// refuse is the plugin's own refusal of an image volume it cannot check.
// It is a deny whatever the policy's mode: what cannot be named cannot be
// matched to a rule, audit-mode or not.
func refuse(reason string) gate.Decision {
	return gate.Decision{Verdict: gate.VerdictDeny, Reason: reason}
}

// volumesKey sums up a container's image volumes for the memo: a later
// request for the container with other volumes is decided afresh.
func volumesKey(vols []ImageVolume, err error) string {
	if err != nil {
		return "error: " + err.Error()
	}
	var b strings.Builder
	for _, v := range vols {
		b.WriteString(v.Destination)
		b.WriteByte('=')
		b.WriteString(v.Source)
		b.WriteByte(0)
	}
	return b.String()
}
