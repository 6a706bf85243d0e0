// Package gate answers one question: may this image, at this digest, run in
// this namespace? It picks the policy rule, asks the rule's validator through
// the verdict cache, and gives up before the caller's deadline. It knows
// nothing of NRI (see plugin) or of how decisions are reported (see report).
package gate

import (
	"errors"
	"fmt"
	"slices"
	"sync/atomic"

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
