package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/nri-image-verifier/nri-image-verifier/gate"
	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/nri-image-verifier/nri-image-verifier/report"
	"github.com/nri-image-verifier/nri-image-verifier/verify"
	"github.com/nri-image-verifier/nri-image-verifier/verify/registry"
	"github.com/nri-image-verifier/nri-image-verifier/verify/validators"
)

// verifierFlags are the flags `run` and `verify` share: where the policy is,
// how to reach registries, how long answers are kept.
type verifierFlags struct {
	policy         string
	dockerConfig   string
	requestTimeout time.Duration
	verifyTimeout  time.Duration
	allowTTL       time.Duration
	denyTTL        time.Duration
	errorTTL       time.Duration
	// maxRunning, maxPerGroup and maxInFlight bound verification work
	// (verify.CacheOptions).
	maxRunning, maxPerGroup, maxInFlight, maxInFlightPerGroup int
	// limits bound what a registry can make a verification hold.
	limits registryLimits

	// metrics, if set before build, instruments registry requests and
	// validator runs (the daemon sets it; the one-shot CLI does not).
	metrics *report.Metrics
	// local, if set before build, is containerd's content store, read
	// first by the chain check (the daemon sets it with --prewarm).
	local registry.LocalContent
}

func (f *verifierFlags) register(fs *flag.FlagSet) {
	def := verify.DefaultCacheOptions()
	fs.StringVar(&f.policy, "policy", "", "policy file (required)")
	fs.StringVar(&f.dockerConfig, "docker-config", "", "docker config.json with registry credentials (default: the user's docker config, if any)")
	fs.DurationVar(&f.requestTimeout, "registry-timeout", registry.DefaultTimeout, "timeout of one registry request")
	fs.DurationVar(&f.verifyTimeout, "verify-timeout", def.VerifyTimeout, "timeout of one whole verification (it goes on after the NRI deadline, in the background)")
	fs.DurationVar(&f.allowTTL, "cache-allow-ttl", def.PositiveTTL, "how long an allow verdict is cached")
	fs.DurationVar(&f.denyTTL, "cache-deny-ttl", def.NegativeTTL, "how long a deny verdict is cached (a signature may be added later)")
	fs.DurationVar(&f.errorTTL, "cache-error-ttl", def.ErrorTTL, "how long a transient failure (registry down) is cached")
	fs.IntVar(&f.maxRunning, "max-verifications", def.MaxVerifications, "verifications running at once on the node; more wait for a slot (each holds registry responses in memory)")
	fs.IntVar(&f.maxPerGroup, "max-verifications-per-group", def.MaxPerGroup, "verifications running at once for one registry host, and for one namespace, so that no tenant or registry takes every slot")
	fs.IntVar(&f.maxInFlight, "max-verifications-in-flight", def.MaxFlights, "verifications running or waiting for a slot; a create that needs one more is denied at once, and its retry tries again")
	fs.IntVar(&f.maxInFlightPerGroup, "max-verifications-in-flight-per-group", def.MaxFlightsPerGroup, "--max-verifications-in-flight for one registry host, and for one namespace")
	f.limits.register(fs)
}

// build loads the policy and makes the gate with its registry client.
func (f *verifierFlags) build() (*gate.Gate, *registry.Client, error) {
	if f.policy == "" {
		return nil, nil, fmt.Errorf("--policy is required")
	}
	pol, err := policy.LoadWith(f.policy, validators.Check)
	if err != nil {
		return nil, nil, fmt.Errorf("invalid policy %s:\n%w", f.policy, err)
	}
	opts := registry.Options{Timeout: f.requestTimeout, Local: f.local}
	f.limits.apply(&opts)
	if f.metrics != nil {
		opts.Transport = f.metrics.Transport(registry.NewTransport())
	}
	if f.dockerConfig != "" {
		kc, err := registry.DockerConfigKeychain(f.dockerConfig)
		if err != nil {
			return nil, nil, fmt.Errorf("--docker-config: %w", err)
		}
		opts.Keychain = kc
	}
	reg, err := registry.New(opts)
	if err != nil {
		return nil, nil, err
	}
	cache := verify.NewCache(verify.CacheOptions{
		PositiveTTL:        f.allowTTL,
		NegativeTTL:        f.denyTTL,
		ErrorTTL:           f.errorTTL,
		VerifyTimeout:      f.verifyTimeout,
		MaxVerifications:   f.maxRunning,
		MaxPerGroup:        f.maxPerGroup,
		MaxFlights:         f.maxInFlight,
		MaxFlightsPerGroup: f.maxInFlightPerGroup,
	})
	g, err := gate.New(pol, timed(validators.Builder(reg), f.metrics), cache)
	if err != nil {
		return nil, nil, fmt.Errorf("policy %s: %w", f.policy, err)
	}
	f.metrics.WatchCache(cacheStats(cache), cache.Len)
	f.metrics.WatchRegistryBudget(func() report.RegistryBudget {
		s := reg.BodyBudget()
		return report.RegistryBudget{InUse: s.InUse, Limit: s.Limit, Refused: s.Refused}
	})
	return g, reg, nil
}

// timed wraps every validator the gate builds so that each verification's
// duration and result reach the metrics. Without metrics it changes nothing.
func timed(build gate.BuildFunc, m *report.Metrics) gate.BuildFunc {
	if m == nil {
		return build
	}
	return func(v *policy.Validator) (verify.Verifier, error) {
		inner, err := build(v)
		if err != nil {
			return nil, err
		}
		name := v.Name
		return verify.VerifierFunc(func(ctx context.Context, s verify.Subject, with policy.With) (verify.Verdict, error) {
			start := time.Now()
			verdict, err := inner.Verify(ctx, s, with)
			m.ObserveVerification(name, verdict.Allowed, err, time.Since(start))
			return verdict, err
		}), nil
	}
}

// cacheStats reads the verdict cache's counters for the metrics.
func cacheStats(c *verify.Cache) func() report.CacheStats {
	return func() report.CacheStats { return report.CacheStats(c.Stats()) }
}
