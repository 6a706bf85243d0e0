package gate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/nri-image-verifier/nri-image-verifier/verify"
)

// Decide answers for one container. It returns by ctx's deadline: when the
// verification is still running then, the decision is a pending deny (or an
// audit-mode allow) and the verdict is cached when it arrives.
func (g *Gate) Decide(ctx context.Context, in Input) Decision {
	start := time.Now()
	d, c := g.cur.Load().route(in)
	if c != nil {
		verdict, err, hit := g.cache.Cached(c.key)
		if !hit {
			verdict, err, hit = g.cache.Get(ctx, c.key, c.verify, c.groups()...)
		}
		d = settle(d, verdict, err, hit)
	}
	d.Latency = time.Since(start)
	return d
}

// DecideCached is Decide for a verdict already in the cache: it answers at
// once, without starting or waiting for a verification, or returns ok false
// when the answer needs one (then call Decide). It never blocks, so a caller
// needs no deadline machinery around it; its decisions are exactly
// Decide's.
func (g *Gate) DecideCached(in Input) (d Decision, ok bool) {
	start := time.Now()
	d, c := g.cur.Load().route(in)
	ok = true
	if c != nil {
		verdict, err, hit := g.cache.Cached(c.key)
		if ok = hit; ok {
			d = settle(d, verdict, err, hit)
		}
	}
	d.Latency = time.Since(start)
	return d, ok
}

// Prewarm verifies an image before any container of it is created: image,
// digest and configDigest as containerd's image store has them (the runtime
// later sends the same digests through NRI). It verifies the digests against
// every rule the image can meet, in any namespace, so that whichever pod
// runs it finds its verdict cached. It returns when those verifications are
// done or ctx ends (they then go on, and are cached, in the background), with
// the number of rules verified for. An image no rule applies to is no error.
func (g *Gate) Prewarm(ctx context.Context, image, digest, configDigest string) (int, error) {
	if image == "" || digest == "" {
		return 0, errors.New("prewarm: image name and digest are needed")
	}
	st := g.cur.Load()
	var (
		wg   sync.WaitGroup
		seen []int
	)
	for _, ns := range st.namespaces {
		r := st.matches.lookup(st.matcher, image, ns)
		if r.repoErr != nil {
			return 0, fmt.Errorf("prewarm: image %q: %w", image, r.repoErr)
		}
		if r.err != nil || slices.Contains(seen, r.m.Index) {
			continue
		}
		seen = append(seen, r.m.Index)
		c := st.checkFor(r.m, r.repo, digest, configDigest)
		wg.Go(func() {
			// The verdict, or the error, is cached: that is all prewarming
			// is for. A failure is the hook's to report, when a container
			// of the image is created.
			_, _, _ = g.cache.Get(verify.OffLock(ctx), c.key, c.verify, c.groups()...)
		})
	}
	wg.Wait()
	return len(seen), nil
}

// check is one rule's verification of one image: the verdict cache's key
// and the work that fills it. Decide, DecideCached and Prewarm all get it
// from checkFor, so a prewarmed verdict is always the one the hook looks up.
type check struct {
	key    string
	verify func(context.Context) (verify.Verdict, error)
	// host and namespace name the groups (see groups); namespace is unset
	// for a prewarm, which no pod asked for.
	host, namespace string
	forPod          bool
}

// checkFor is the check of digest (and configDigest) in repository repo
// under the rule m matched. The key names the digests, the repository, the
// rule and the policy version, never the tag: two tags of one image in one
// repository share the verdict of a rule, copies in two repositories do
// not (their signatures are looked up apart), and a reload never serves an
// old policy's verdict.
func (st *state) checkFor(m *policy.Match, repo, digest, configDigest string) check {
	v := st.verifiers[m.Validator.Name]
	subject := verify.Subject{Repository: repo, Digest: digest, ConfigDigest: configDigest}
	with := m.Rule.With
	host, _, _ := strings.Cut(repo, "/")
	return check{
		key: verify.Key(digest, configDigest, repo, strconv.Itoa(m.Index), st.pol.Version),
		verify: func(ctx context.Context) (verify.Verdict, error) {
			return v.Verify(ctx, subject, with)
		},
		host: host,
	}
}

// groups are the check's groups for the cache's verification limits and
// breakers: the image's registry host and, for a container, its
// namespace (see verify.Cache.Get). One tenant's tarpit registry then
// holds neither all the slots nor, through the runtime's NRI lock,
// everyone's creates. Built only when a verification may be needed: a
// cached answer allocates none of it.
func (c *check) groups() []string {
	if !c.forPod {
		return []string{"registry " + c.host}
	}
	return []string{"registry " + c.host, "namespace " + c.namespace}
}

// route picks the rule for in. It returns the decision so far and the check
// that settles it, or a nil check when the decision is final already (no
// name, no rule, no digest).
func (st *state) route(in Input) (Decision, *check) {
	d := Decision{Image: in.Image, Mode: st.pol.Mode}
	if d.Mode == "" {
		d.Mode = policy.ModeEnforce
	}
	if in.Image == "" {
		return fail(d, "the runtime did not report the image name, so no policy rule can be chosen"), nil
	}
	r := st.matches.lookup(st.matcher, in.Image, in.Namespace)
	if r.repoErr != nil {
		return fail(d, fmt.Sprintf("cannot tell the image's repository from %q: %v", in.Image, r.repoErr)), nil
	}
	if r.err != nil {
		return fail(d, r.err.Error()), nil
	}
	m := r.m
	d.Image, d.Rule, d.Validator, d.Mode = m.Image, m.Rule.Pattern, m.Validator.Name, m.Mode
	if in.Digest == "" {
		if in.DigestError != "" {
			return fail(d, "the image digest could not be found through containerd's socket: "+in.DigestError), nil
		}
		return fail(d, "the runtime did not report the image digest (containerd >= 2.4 sends it through NRI)"), nil
	}
	c := st.checkFor(m, r.repo, in.Digest, in.ConfigDigest)
	c.namespace, c.forPod = in.Namespace, true
	return d, &c
}

// settle finishes d with the verification's outcome.
func settle(d Decision, verdict verify.Verdict, err error, hit bool) Decision {
	d.CacheHit = hit
	switch {
	case errors.Is(err, verify.ErrPending):
		d.Pending = true
		return fail(d, "no verdict by the decision deadline; the check goes on in the background and a retry gets its cached verdict")
	case errors.Is(err, verify.ErrBusy):
		return fail(d, "not checked: "+err.Error()+"; if this persists, registries are answering slowly (see the pending and busy metrics) or --max-verifications-in-flight is too low")
	case err != nil:
		return fail(d, "verification failed: "+err.Error())
	case !verdict.Allowed:
		return fail(d, verdict.Reason)
	}
	d.Allowed, d.Verdict, d.Reason = true, VerdictAllow, verdict.Reason
	return d
}

// fail turns a failed check into a deny, or into an allow in audit mode.
func fail(d Decision, reason string) Decision {
	if d.Mode == policy.ModeAudit {
		d.Allowed, d.Verdict, d.Reason = true, VerdictAuditDeny, reason
		return d
	}
	return deny(d, reason)
}

func deny(d Decision, reason string) Decision {
	d.Allowed, d.Verdict, d.Reason = false, VerdictDeny, reason
	return d
}
