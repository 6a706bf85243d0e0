package plugin

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/nri-image-verifier/nri-image-verifier/gate"
	"github.com/nri-image-verifier/nri-image-verifier/imageref"
)

// prefer answers for the record the container's spec named (in.Requested)
// instead of the one the runtime named, when that record leads to the same
// config: containerd >= 2.4 fills Container.Image from the first of all
// the records that share the image's ID, so another tenant who pulls a
// look-alike (the same config, one more manifest annotation) under a name
// that sorts first would have the victim's container matched and verified
// as the look-alike, and refused. The same config is the same content, so
// nothing is let through that the runtime's record would not run; another
// config keeps the runtime's answer. The choice is remembered (prefMemo),
// so that later creates of the image take the cached fast path.
func (p *Plugin) prefer(ctx context.Context, in gate.Input) gate.Input {
	img, err := p.cfg.Resolver.Lookup(ctx, in.Requested)
	switch {
	case err != nil:
		p.log.Debug("the requested image's record cannot be read; keeping the runtime's", "requested", in.Requested, "image", in.Image, "error", err)
		return in
	case img.ConfigDigest != in.ConfigDigest:
		p.log.Debug("the requested image's record leads to another config; keeping the runtime's", "requested", in.Requested,
			"image", in.Image, "config", in.ConfigDigest, "requested_config", img.ConfigDigest)
		p.prefs.put(in, pref{})
		return in
	}
	p.prefs.put(in, pref{name: img.Name, digest: img.Digest, use: true})
	in.Image, in.Digest = img.Name, img.Digest
	return in
}

// preferred applies a remembered choice of prefer to in. lookup says that
// prefer has to be asked (nothing is remembered for in).
func (p *Plugin) preferred(in gate.Input) (out gate.Input, lookup bool) {
	if !p.prefersRequested(in) {
		return in, false
	}
	c, ok := p.prefs.get(in)
	if !ok {
		return in, true
	}
	if c.use {
		in.Image, in.Digest = c.name, c.digest
	}
	return in, false
}

// prefersRequested says whether prefer has a question for the Resolver:
// the runtime sent a config to compare with, and the request names another
// record than the runtime's (a digest reference to the very digest the
// runtime sent is the same answer).
func (p *Plugin) prefersRequested(in gate.Input) bool {
	if p.cfg.Resolver == nil || in.Requested == "" || in.Digest == "" || in.ConfigDigest == "" || imageref.IsImageID(in.Requested) {
		return false
	}
	req, err1 := imageref.Normalize(in.Requested)
	img, err2 := imageref.Normalize(in.Image)
	if err1 != nil || err2 != nil || req == img {
		return false
	}
	repoReq, dgst, pinned := strings.Cut(req, "@")
	repoImg, err := imageref.Repository(img)
	return !(pinned && dgst == in.Digest && err == nil && repoReq == repoImg)
}

// prefMemo remembers prefer's choices for a minute, keyed by everything
// they depend on: the requested name and the runtime's digests. A choice
// stays right while the key holds (the chosen record leads to the same
// config, so to the same content), so the minute only bounds how long a
// record that moved is still named; the size bounds memory.
type prefMemo struct {
	mu sync.Mutex
	m  map[string]pref
}

type pref struct {
	name, digest string
	use          bool
	at           time.Time
}

const (
	prefTTL = time.Minute
	prefCap = 4096
)

func prefKey(in gate.Input) string { return in.Requested + "|" + in.Digest + "|" + in.ConfigDigest }

func (m *prefMemo) get(in gate.Input) (pref, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.m[prefKey(in)]
	return c, ok && time.Since(c.at) < prefTTL
}

func (m *prefMemo) put(in gate.Input, c pref) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil || len(m.m) >= prefCap {
		m.m = make(map[string]pref) // the next creates look up again
	}
	c.at = time.Now()
	m.m[prefKey(in)] = c
}
