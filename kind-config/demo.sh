#!/usr/bin/env bash
# make kind-demo: install nri-image-verifier on the kind cluster made by
# `make kind-up`, then show a refused pod the way an operator sees it.
# Needs docker, kind and kubectl; helm is used from PATH, else built from
# the Go module proxy (make kube-tools).
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER=${KIND_CLUSTER:-nri-image-verifier}
IMAGE=${IMAGE:-nri-image-verifier:dev}
CTX=kind-$CLUSTER
for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null || { echo "kind-demo needs $tool on PATH" >&2; exit 1; }
done
HELM=${HELM:-$(command -v helm || true)}
if [ -z "$HELM" ]; then
  HELM="$(go run ./internal/kubetoolstest/kube-tools)/helm"
fi

echo "== loading $IMAGE into kind cluster $CLUSTER"
kind load docker-image --name "$CLUSTER" "$IMAGE"

echo "== installing the chart (kind values: host network, containerd fallback, 4s decisions)"
"$HELM" upgrade --install nri-image-verifier daemonset/chart --kube-context "$CTX" \
  --namespace kube-system -f kind-config/values-kind.yaml \
  --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}"
kubectl --context "$CTX" -n kube-system rollout status daemonset/nri-image-verifier --timeout 5m

echo "== system pods, checked by the plugin now that it runs"
kubectl --context "$CTX" -n kube-system wait --for=condition=Ready pod --all --timeout 5m

echo "== an unsigned image in namespace default: refused"
kubectl --context "$CTX" delete pod unsigned --ignore-not-found --wait
kubectl --context "$CTX" run unsigned --image=registry.k8s.io/pause:3.10 --restart=Never
for _ in $(seq 1 60); do
  if kubectl --context "$CTX" get events --field-selector reason=ImageVerificationFailed,involvedObject.name=unsigned \
      -o name 2>/dev/null | grep -q .; then
    break
  fi
  sleep 2
done
kubectl --context "$CTX" describe pod unsigned | sed -n '/^Events:/,$p'
echo
kubectl --context "$CTX" get events --field-selector reason=ImageVerificationFailed
