#!/usr/bin/env bash
# Installs what `make demo`, the e2e tests (integration/containerd), the
# cluster test (integration/cluster) and the benchmarks run (the tests
# through internal/containerdtest), and prints the directory holding
# containerd and containerd-shim-runc-v2.
#
#   hack/install-containerd.sh [VERSION]
#
# VERSION (else $CONTAINERD_VERSION, else v2.4.2) is a containerd release
# tag. The e2e tests install v2.4.2 (sends the image digest through NRI) and
# v2.2.9 (does not: the plugin's containerd-socket fallback is tested on it);
# each version is built and cached on its own.
#
#   containerd + its runc shim  built with `go install` from the Go module
#                               proxy (Debian's containerd 1.6 is too old for
#                               NRI), cached OUTSIDE the clone: CI clones
#                               afresh, so a cache in the clone is always cold
#   runc                        from apt, if missing
#
# Cache: ${NIV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nri-image-verifier}/containerd-VERSION
# A cold build takes 2-5 minutes on 2 cores; a warm run is instant.
#
# Safe to run concurrently (go test runs integration/containerd and
# integration/cluster at once, both install): the build of a version and
# the apt step each run under a lock in the cache folder (flock), and what
# they make is checked again once the lock is held, so the second runner
# finds the first one's work instead of redoing it, and never runs apt
# while the first one does. apt also waits for dpkg's own lock
# (DPkg::Lock::Timeout) if something else holds it. NIV_LOCK_WAIT (seconds,
# default 1800) bounds each wait.
set -euo pipefail

version=${1:-${CONTAINERD_VERSION:-v2.4.2}}
case $version in
v[0-9]*.[0-9]*.[0-9]*) ;;
*) echo "install-containerd.sh: version $version is not a release tag like v2.4.2" >&2; exit 2 ;;
esac
cache=${NIV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nri-image-verifier}
dir=$cache/containerd-$version
# How long to wait for another runner's lock (a cold build on a busy
# machine, apt on a slow mirror) before giving up.
lock_wait=${NIV_LOCK_WAIT:-1800}

# with_lock FILE CMD...: runs CMD holding an exclusive lock on FILE.
with_lock() {
	local file=$1
	shift
	(
		if ! flock -w "$lock_wait" 9; then
			echo "install-containerd.sh: $file still locked after ${lock_wait}s (another install running?)" >&2
			exit 1
		fi
		"$@"
	) 9>"$file"
}

built() { [ -x "$dir/containerd" ] && [ -x "$dir/containerd-shim-runc-v2" ]; }

build() {
	built && return 0 # whoever held the lock before us built it
	echo "building containerd $version and its runc shim (cold: 2-5 min), cached in $dir" >&2
	local partial
	partial=$(mktemp -d "$dir.partial.XXXXXX")
	trap 'rm -rf "$partial"' EXIT
	GOBIN=$partial go install \
		"github.com/containerd/containerd/v2/cmd/containerd@$version" \
		"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$version" >&2
	# One rename: an interrupted build never looks like a cached one. An
	# incomplete folder (a binary removed by hand) is replaced.
	rm -rf "$dir"
	mv -T "$partial" "$dir"
	trap - EXIT
}

apt_install_runc() {
	command -v runc >/dev/null && return 0 # installed while we waited
	echo "installing runc from apt" >&2
	local apt=(apt-get -o DPkg::Lock::Timeout="$lock_wait")
	"${apt[@]}" update -qq >&2
	DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -qq runc >&2
}

if ! built; then
	mkdir -p "$cache"
	with_lock "$dir.lock" build
fi

if ! command -v runc >/dev/null; then
	mkdir -p "$cache"
	with_lock "$cache/apt.lock" apt_install_runc
fi

echo "$dir"
