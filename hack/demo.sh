#!/usr/bin/env bash
# `make demo`: nri-image-verifier guarding a real containerd.
#
# On a Debian machine, as root, with only Go and apt, this:
#   1. installs containerd v2.4.2 and its runc shim (go install, cached
#      outside the clone) and runc (apt)            -> hack/install-containerd.sh
#   2. builds nri-image-verifier and the demo's helper programs
#   3. starts an OCI registry on 127.0.0.1, pushes a pause image and two app
#      images, and signs ONE of them with a cosign key made on the spot
#   4. starts containerd on its own directories and sockets (never the
#      system's), with NRI on and the default validator requiring our
#      plugin                                         -> hack/containerd-config.toml
#   5. starts nri-image-verifier with a policy: images of this registry must
#      be signed with that key
#   6. through the CRI API, as kubelet does: creates a pod and a container of
#      each app image. The signed one runs; the unsigned one is refused.
# and then removes every process, mount and temp directory it made, also on
# failure or Ctrl-C. Nothing but loopback is dialled (the containerd build
# uses the Go module proxy; runc comes from apt).
#
# The logs of the last run stay in $NIV_CACHE/demo: audit.jsonl (one JSON
# line per decision), plugin.log, containerd.log, and the configs used.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${NIV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nri-image-verifier}
out=$cache/demo
tmp=      # our temp dir, once made; cleanup removes it
cgroup=   # the pods' cgroup parent, named after it
pids=()   # background processes we started, in start order

say() { printf '\n==> [%ss] %s\n' "$SECONDS" "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root: containerd and runc need it"
command -v go >/dev/null || die "go is not in PATH"

# ---------------------------------------------------------------- cleanup
# containerd does not stop containers when it exits, and leaves shims,
# runc state and overlay mounts behind if pods were not removed (failure,
# Ctrl-C). So: stop our processes, then whatever containerd left, by PID.
cleanup() {
	local status=$?
	trap - EXIT INT TERM
	set +e
	if [ -n "$tmp" ]; then
		say "cleaning up"
		local i
		for ((i = ${#pids[@]} - 1; i >= 0; i--)); do stop "${pids[i]}"; done
		# Containers still running: runc kills them and removes their cgroups.
		for id in $(runc --root "$tmp/runc/k8s.io" list -q 2>/dev/null); do
			runc --root "$tmp/runc/k8s.io" delete --force "$id"
		done
		# Their shims: the processes whose command line names our containerd
		# socket as the address to report to (no other process's can).
		for p in /proc/[0-9]*; do
			case " $({ tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null)" in
			*" -address $tmp/containerd.sock "*) kill -KILL "${p#/proc/}" ;;
			esac
		done
		# Mounts under our temp dir (rootfs overlays, sandbox shm), deepest
		# first; then the pods' cgroup parent in every hierarchy.
		awk -v d="$tmp/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
			while read -r m; do umount "$m" || umount -l "$m"; done
		[ -n "$cgroup" ] && find /sys/fs/cgroup -maxdepth 2 -type d -name "$cgroup" -prune \
			-exec find {} -depth -type d -delete \; 2>/dev/null
		rm -rf "$tmp"
	fi
	[ "$status" = 0 ] || printf '\ndemo FAILED (exit %s); logs in %s\n' "$status" "$out" >&2
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# stop PID: SIGTERM, then SIGKILL if it has not exited within 10 s.
stop() {
	kill -TERM "$1" 2>/dev/null || return 0
	for _ in $(seq 100); do
		kill -0 "$1" 2>/dev/null || { wait "$1" 2>/dev/null; return 0; }
		sleep 0.1
	done
	kill -KILL "$1" 2>/dev/null
	wait "$1" 2>/dev/null
}

# wait_for SECONDS WHAT PID COMMAND...: until COMMAND succeeds; fails early
# if PID (the process that should make it succeed) died.
wait_for() {
	local secs=$1 what=$2 pid=$3
	shift 3
	for _ in $(seq $((secs * 10))); do
		"$@" && return 0
		kill -0 "$pid" 2>/dev/null || die "$what: the process exited; see $out"
		sleep 0.1
	done
	die "$what: not after ${secs}s; see $out"
}

# ---------------------------------------------------------------- 1. install
say "1. containerd v2.4.2 + runc shim (cached), runc"
ctrd=$("$repo/hack/install-containerd.sh")
echo "containerd: $ctrd/containerd ($("$ctrd/containerd" --version | awk '{print $3}')), runc: $(command -v runc)"

# A short path: unix sockets (and containerd's shim socket dir) have
# length limits.
tmp=$(mktemp -d /tmp/niv-demo.XXXXXX)
cgroup=niv-demo-${tmp##*.}
rm -rf "${out:?}" && mkdir -p "$out"
mkdir -p "$tmp/bin"

# ---------------------------------------------------------------- 2. build
say "2. building nri-image-verifier and the demo helpers"
cd "$repo"
go build -tags nri_no_wasm -o "$tmp/bin/" ./cmd/nri-image-verifier
go build -o "$tmp/bin/" ./internal/containerdtest/cmd/niv-registry ./internal/containerdtest/cmd/niv-cri
# The one program inside every image: static, so an image needs no base.
CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$tmp/bin/" ./internal/containerdtest/cmd/niv-sleep

# ---------------------------------------------------------------- 3. registry
say "3. loopback registry, images, signature"
"$tmp/bin/niv-registry" -program "$tmp/bin/niv-sleep" -out "$tmp" >"$out/registry.log" 2>&1 &
pids+=($!)
wait_for 30 "registry" "$!" test -f "$tmp/world.env"
# shellcheck source=/dev/null
. "$tmp/world.env" # REGISTRY, PAUSE_IMAGE, SIGNED_IMAGE, UNSIGNED_IMAGE, digests, PUBLIC_KEY
echo "registry:  http://$REGISTRY"
echo "signed:    $SIGNED_IMAGE ($SIGNED_DIGEST)"
echo "unsigned:  $UNSIGNED_IMAGE ($UNSIGNED_DIGEST)"

# ---------------------------------------------------------------- 4. containerd
say "4. containerd with NRI and the default validator requiring nri-image-verifier"
# containerd reaches the registry over plain HTTP through hosts.toml.
mkdir -p "$tmp/certs.d/$REGISTRY"
cat >"$tmp/certs.d/$REGISTRY/hosts.toml" <<EOF
server = "http://$REGISTRY"

[host."http://$REGISTRY"]
  capabilities = ["pull", "resolve"]
EOF
sed -e "s|@DIR@|$tmp|g" -e "s|@PAUSE_IMAGE@|$PAUSE_IMAGE|g" -e "s|@NRI_REQUEST_TIMEOUT@|2s|g" \
	"$repo/hack/containerd-config.toml" >"$out/containerd.toml"
# containerd finds containerd-shim-runc-v2 on PATH.
PATH=$ctrd:$PATH "$ctrd/containerd" --config "$out/containerd.toml" >"$out/containerd.log" 2>&1 &
pids+=($!)
wait_for 60 "containerd" "$!" test -S "$tmp/containerd.sock"
echo "containerd: socket $tmp/containerd.sock, NRI socket $tmp/nri.sock"

# ---------------------------------------------------------------- 5. plugin
say "5. nri-image-verifier: $REGISTRY/* must be signed with the demo key"
{
	cat <<EOF
validators:
- name: default
  type: cosign
  trustRoots:
  - name: demo-key
    key: |
EOF
	sed 's/^/      /' "$PUBLIC_KEY"
	cat <<EOF
policy:
- pattern: "$REGISTRY/*"
  with: {trustRoot: demo-key}
EOF
} >"$out/policy.yaml"
echo '{}' >"$tmp/docker-config.json" # no registry credentials: never read the host's
"$tmp/bin/nri-image-verifier" run \
	--policy "$out/policy.yaml" \
	--nri-socket "$tmp/nri.sock" \
	--audit-log "$out/audit.jsonl" \
	--docker-config "$tmp/docker-config.json" \
	--node-name demo-node >"$out/plugin.log" 2>&1 &
pids+=($!)
wait_for 30 "nri-image-verifier registering with containerd" "$!" \
	grep -q '"connected to NRI runtime"' "$out/plugin.log"
echo "connected to containerd's NRI socket"

# ---------------------------------------------------------------- 6. CRI
say "6. a pod and two containers, through the CRI API"
"$tmp/bin/niv-cri" -socket "$tmp/containerd.sock" -log-dir "$tmp/pod-logs" -cgroup-parent "/$cgroup" \
	-expect-running "$SIGNED_IMAGE" -expect-refused "$UNSIGNED_IMAGE"

say "audit log: $out/audit.jsonl (one JSON line per decision)"
sed -E 's/.*"container":"([^"]*)".*"image":"([^"]*)".*"verdict":"([^"]*)".*/  verdict \3 for container "\1" (\2)/' \
	"$out/audit.jsonl"
echo
echo "demo OK: the signed image ran, the unsigned one was refused before creation."
echo "logs of this run: $out"
