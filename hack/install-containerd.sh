#!/usr/bin/env bash
# Installs what `make demo` and the e2e tests (integration/containerd) run,
# and prints the directory holding containerd and containerd-shim-runc-v2.
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
set -euo pipefail

version=${1:-${CONTAINERD_VERSION:-v2.4.2}}
case $version in
v[0-9]*.[0-9]*.[0-9]*) ;;
*) echo "install-containerd.sh: version $version is not a release tag like v2.4.2" >&2; exit 2 ;;
esac
cache=${NIV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nri-image-verifier}
dir=$cache/containerd-$version

if [ ! -x "$dir/containerd" ] || [ ! -x "$dir/containerd-shim-runc-v2" ]; then
	echo "building containerd $version and its runc shim (cold: 2-5 min), cached in $dir" >&2
	mkdir -p "$cache"
	partial=$(mktemp -d "$dir.partial.XXXXXX")
	trap 'rm -rf "$partial"' EXIT
	GOBIN=$partial go install \
		"github.com/containerd/containerd/v2/cmd/containerd@$version" \
		"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$version"
	# One rename: an interrupted build never looks like a cached one. If a
	# concurrent run got there first, its copy is as good as ours.
	mv -T "$partial" "$dir" 2>/dev/null || [ -x "$dir/containerd-shim-runc-v2" ]
fi

if ! command -v runc >/dev/null; then
	echo "installing runc from apt" >&2
	apt-get update -qq >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq runc >&2
fi

echo "$dir"
