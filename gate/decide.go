package gate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/nri-image-verifier/nri-image-verifier/verify"
)

// BuildFunc makes the verifier for one policy validator.
type BuildFunc func(v *policy.Validator) (verify.Verifier, error)

// Gate decides. It is safe for concurrent use; SetPolicy swaps the policy
// atomically, so a decision sees either the old or the new one, never a mix.
type Gate struct {
	build BuildFunc
	cache *verify.Cache
	cur   atomic.Pointer[state]
}

type state struct {
	pol       *policy.Policy
	matcher   *policy.Matcher
	verifiers map[string]verify.Verifier
	matches   matchCache
	// namespaces are "" and every namespace a rule is limited to: between
	// them they meet every rule an image can get in any namespace.
	namespaces []string
}

// New returns a gate enforcing pol.
func New(pol *policy.Policy, build BuildFunc, cache *verify.Cache) (*Gate, error) {
	if cache == nil {
		cache = verify.NewCache(verify.CacheOptions{})
	}
	g := &Gate{build: build, cache: cache}
	if err := g.SetPolicy(pol); err != nil {
		return nil, err
	}
	return g, nil
}

// SetPolicy builds the verifiers of pol and puts it in force. On error the
// previous policy stays in force.
func (g *Gate) SetPolicy(pol *policy.Policy) error {
	if pol == nil {
		return errors.New("no policy")
	}
	vs := make(map[string]verify.Verifier, len(pol.Validators))
	for i := range pol.Validators {
		v := &pol.Validators[i]
		built, err := g.build(v)
		if err != nil {
			return fmt.Errorf("validator %q: %w", v.Name, err)
		}
		vs[v.Name] = built
	}
	nss := []string{""}
	for _, r := range pol.Rules {
		for _, ns := range r.Namespaces {
			if !slices.Contains(nss, ns) {
				nss = append(nss, ns)
			}
		}
	}
	old := g.cur.Swap(&state{pol: pol, matcher: policy.NewMatcher(pol), verifiers: vs, namespaces: nss})
	if old != nil && old.pol.Version != pol.Version {
		// Verdicts are keyed by policy version; purging just frees memory.
		g.cache.Purge()
	}
	return nil
}

// Policy returns the policy in force.
func (g *Gate) Policy() *policy.Policy { return g.cur.Load().pol }

// Cache returns the verdict cache (for metrics and benchmarks).
func (g *Gate) Cache() *verify.Cache { return g.cache }

// Decide answers for one container. It returns by ctx's deadline: when the
// verification is still running then, the decision is a pending deny (or an
// audit-mode allow) and the verdict is cached when it arrives.
func (g *Gate) Decide(ctx context.Context, in Input) Decision {
	start := time.Now()
	d := g.decide(ctx, in)
	d.Latency = time.Since(start)
	return d
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
		m := r.m
		seen = append(seen, m.Index)
		v := st.verifiers[m.Validator.Name]
		subject := verify.Subject{Repository: r.repo, Digest: digest, ConfigDigest: configDigest}
		key := verify.Key(digest, configDigest, strconv.Itoa(m.Index), st.pol.Version)
		wg.Go(func() {
			// The verdict, or the error, is cached: that is all prewarming
			// is for. A failure is the hook's to report, when a container
			// of the image is created.
			_, _, _ = g.cache.Get(ctx, key, func(ctx context.Context) (verify.Verdict, error) {
				return v.Verify(ctx, subject, m.Rule.With)
			})
		})
	}
	wg.Wait()
	return len(seen), nil
}

// DecideCached is Decide for a verdict already in the cache: it answers at
// once, without starting or waiting for a verification, or returns ok false
// when the answer needs one (then call Decide). It never blocks, so a caller
// needs no deadline machinery around it; its decisions are exactly
// Decide's.
func (g *Gate) DecideCached(in Input) (d Decision, ok bool) {
	start := time.Now()
	d, ok = g.decideWith(context.Background(), in, true)
	d.Latency = time.Since(start)
	return d, ok
}

func (g *Gate) decide(ctx context.Context, in Input) Decision {
	d, _ := g.decideWith(ctx, in, false)
	return d
}

// decideWith decides; with cachedOnly it only looks the verdict up and
// returns ok false instead of verifying.
func (g *Gate) decideWith(ctx context.Context, in Input, cachedOnly bool) (_ Decision, ok bool) {
	st := g.cur.Load()
	d := Decision{Image: in.Image, Mode: string(st.pol.Mode)}
	if d.Mode == "" {
		d.Mode = string(policy.ModeEnforce)
	}
	if in.Image == "" {
		return g.fail(d, "the runtime did not report the image name, so no policy rule can be chosen"), true
	}
	r := st.matches.lookup(st.matcher, in.Image, in.Namespace)
	if r.repoErr != nil {
		return g.fail(d, fmt.Sprintf("cannot tell the image's repository from %q: %v", in.Image, r.repoErr)), true
	}
	if r.err != nil {
		return g.fail(d, r.err.Error()), true
	}
	repo, m := r.repo, r.m
	d.Image, d.Rule, d.Validator, d.Mode = m.Image, m.Rule.Pattern, m.Validator.Name, string(m.Mode)
	if in.Digest == "" {
		return g.fail(d, "the runtime did not report the image digest (containerd >= 2.4 sends it through NRI)"), true
	}
	v := st.verifiers[m.Validator.Name]
	subject := verify.Subject{Repository: repo, Digest: in.Digest, ConfigDigest: in.ConfigDigest}
	key := verify.Key(in.Digest, in.ConfigDigest, strconv.Itoa(m.Index), st.pol.Version)
	var (
		verdict verify.Verdict
		err     error
		hit     bool
	)
	if cachedOnly {
		if verdict, err, hit = g.cache.Cached(key); !hit {
			return d, false
		}
	} else {
		verdict, err, hit = g.cache.Get(ctx, key, func(ctx context.Context) (verify.Verdict, error) {
			return v.Verify(ctx, subject, m.Rule.With)
		})
	}
	d.CacheHit = hit
	switch {
	case errors.Is(err, verify.ErrPending):
		d.Pending = true
		return g.fail(d, "no verdict by the decision deadline; the check goes on in the background and a retry gets its cached verdict"), true
	case err != nil:
		return g.fail(d, "verification failed: "+err.Error()), true
	case !verdict.Allowed:
		return g.fail(d, verdict.Reason), true
	}
	d.Allowed, d.Verdict, d.Reason = true, VerdictAllow, verdict.Reason
	return d, true
}

// fail turns a failed check into a deny, or into an allow in audit mode.
func (g *Gate) fail(d Decision, reason string) Decision {
	if d.Mode == string(policy.ModeAudit) {
		d.Allowed, d.Verdict, d.Reason = true, VerdictAuditDeny, reason
		return d
	}
	return deny(d, reason)
}

func deny(d Decision, reason string) Decision {
	d.Allowed, d.Verdict, d.Reason = false, VerdictDeny, reason
	return d
}
