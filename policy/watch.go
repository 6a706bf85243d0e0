package policy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Timings of Watch. debounce lets a burst of events (a ConfigMap update is
// several) settle into one re-read; pollInterval is the fallback for events
// that never come (inotify queue overflow, a watch lost with its directory,
// inotify unavailable).
const (
	debounce     = 100 * time.Millisecond
	pollInterval = 3 * time.Second
)

// Watch follows the policy file at path until ctx is done, then returns nil.
// It reads the file at once and after every change, parses it with
// ParseWith(data, check) (the daemon's check is verify/validators.Check),
// and calls onLoad with the new policy when it passes and its Version
// differs from the last one loaded, or onError when the file can not be read
// or is invalid (once per distinct bad content or read error). The caller
// keeps using its last good policy on error. All callbacks run on Watch's
// goroutine, one at a time.
//
// It watches the file's directory, not the file: Kubernetes updates a
// mounted ConfigMap by swapping the "..data" symlink, which never touches
// the file's own name. Any event in the directory triggers a re-read.
func Watch(ctx context.Context, path string, check func(*Policy) error, onLoad func(*Policy), onError func(error)) error {
	if path == "" || onLoad == nil || onError == nil {
		return errors.New("watch policy: path, onLoad and onError are required")
	}
	w := &watcher{path: path, check: check, onLoad: onLoad, onError: onError}

	var events <-chan fsnotify.Event
	var watchErrs <-chan error
	fsw, err := fsnotify.NewWatcher()
	if err == nil {
		err = fsw.Add(filepath.Dir(path))
	}
	if err != nil {
		// Polling still works; say that changes will be seen late.
		onError(fmt.Errorf("watch policy %s: %w (falling back to polling every %s)", path, err, pollInterval))
	} else {
		events, watchErrs = fsw.Events, fsw.Errors
	}
	if fsw != nil {
		defer fsw.Close()
	}

	w.reload()
	poll := time.NewTicker(pollInterval)
	defer poll.Stop()
	settle := time.NewTimer(debounce)
	settle.Stop()
	defer settle.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			settle.Reset(debounce)
		case _, ok := <-watchErrs:
			if !ok {
				watchErrs = nil
				continue
			}
			// Events may have been dropped: re-read to be sure.
			settle.Reset(debounce)
		case <-settle.C:
			w.reload()
		case <-poll.C:
			w.reload()
		}
	}
}

// watcher remembers what was last seen so that unchanged content is neither
// re-parsed nor re-reported.
type watcher struct {
	path    string
	check   func(*Policy) error
	onLoad  func(*Policy)
	onError func(error)

	seen    string // SHA-256 of the bytes last read, valid or not
	loaded  string // Version of the policy last passed to onLoad
	readErr string // last read error reported
}

func (w *watcher) reload() {
	data, err := os.ReadFile(w.path)
	if err != nil {
		if msg := err.Error(); msg != w.readErr {
			w.readErr = msg
			w.onError(fmt.Errorf("load policy: %w", err))
		}
		// Whatever comes back after the error is looked at afresh.
		w.seen = ""
		return
	}
	w.readErr = ""
	sum := sha256.Sum256(data)
	h := hex.EncodeToString(sum[:])
	if h == w.seen {
		return
	}
	w.seen = h
	p, err := ParseWith(data, w.check)
	if err != nil {
		w.onError(fmt.Errorf("load policy %s: %w", w.path, err))
		return
	}
	if p.Version == w.loaded {
		return // back to the content in use, e.g. after a bad edit was reverted
	}
	w.loaded = p.Version
	w.onLoad(p)
}
