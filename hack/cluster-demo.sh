#!/usr/bin/env bash
# `make cluster-demo`: a real single-node Kubernetes cluster on this
# machine with nri-image-verifier installed from daemonset/chart, for a
# person to poke at with the built kubectl; Ctrl-C tears it all down.
#
# It is the cluster of the end-to-end test integration/cluster (TestDemo
# there): etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kubelet, kubectl and helm built from the Go module proxy and cached
# outside the clone (make kube-tools); containerd v2.4.2 with NRI and the
# fail-closed default validator (hack/install-containerd.sh); a loopback
# registry with a signed and an unsigned image and the plugin's own image
# (built without Docker, signed). Root, Debian, Go and apt; nothing but
# loopback is dialled once the tools are built. The last run's logs stay
# in ${NIV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nri-image-verifier}/cluster.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
die() { printf 'cluster-demo: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root: containerd, runc and kubelet need it"
command -v go >/dev/null || die "go is not in PATH"
cache=${NIV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nri-image-verifier}
mkdir -p "$cache/cluster"

cd "$repo"
# The tools first, as a step of their own (cold: 10-15 minutes, once).
go run ./internal/kubetoolstest/kube-tools >/dev/null
bin=$cache/cluster/cluster-demo.test
go test -tags nri_no_wasm -c -o "$bin" ./integration/cluster/
# The test binary runs in its package's folder, as under go test, and alone
# in the foreground, so that Ctrl-C reaches it and it tears the cluster
# down before it exits.
cd integration/cluster
exec "$bin" -test.run '^TestDemo$' -test.v -test.timeout 0 -demo
