# nri-image-verifier. `make test` is what CI runs (.ci/run).
GO        ?= go
TAGS      ?= nri_no_wasm
BIN       ?= bin
GOFLAGS_T := -tags $(TAGS)

.PHONY: all build test vet demo e2e bench fuzz clean
.PHONY: kube-tools manifests image kind-up kind-demo

all: build

build:
	$(GO) build $(GOFLAGS_T) -trimpath -o $(BIN)/nri-image-verifier ./cmd/nri-image-verifier

vet:
	$(GO) vet $(GOFLAGS_T) ./...

# Unit and integration tests. Everything runs on loopback; nothing is mocked
# that can run here for real (NRI runtime side, OCI registry, signatures).
test: vet kube-tools
	$(GO) test $(GOFLAGS_T) -race -count=1 -timeout 20m ./...

# Benchmarks (speed targets live here, never in timed tests).
bench:
	$(GO) test $(GOFLAGS_T) -run '^$$' -bench . -benchmem -count 5 ./gate/ ./policy/

# The README's "run it": a real containerd (built once, cached outside the
# clone) with nri-image-verifier in front, a loopback registry, a signed and
# an unsigned image. Root, Debian, Go and apt; see hack/demo.sh.
demo:
	hack/demo.sh

# Only the real-containerd end-to-end tests (also part of `make test`):
# the matrix on containerd v2.4.2, the core cases on v2.2.9 (no image
# digest through NRI: the --containerd-socket fallback). Each version is
# built once and cached (hack/install-containerd.sh). The v2.4.2 suite's
# Events case also runs a kube-apiserver (kube-tools). Root;
# NIV_SKIP_CONTAINERD=1 skips them.
e2e: kube-tools
	$(GO) test $(GOFLAGS_T) -race -count=1 -timeout 20m -v ./integration/containerd/

# A short run of every fuzz target; FUZZTIME=10m for a longer one.
FUZZTIME ?= 10s
fuzz:
	$(GO) test $(GOFLAGS_T) -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./policy/
	$(GO) test $(GOFLAGS_T) -run '^$$' -fuzz '^FuzzMatch$$' -fuzztime $(FUZZTIME) ./policy/
	$(GO) test $(GOFLAGS_T) -run '^$$' -fuzz '^FuzzIdentity$$' -fuzztime $(FUZZTIME) ./plugin/

clean:
	rm -rf $(BIN)

# kube-apiserver, etcd and helm for the Kubernetes tests (integration/kube,
# integration/containerd's Events case, daemonset), built from the Go module
# proxy through the nested module tools/kube and cached outside the clone,
# keyed by its go.mod and go.sum (cold: 5-12 min, ~3 GB). `make test` runs
# it first so that the build is a step of its own; the tests build on a
# cache miss too.
kube-tools:
	$(GO) run ./internal/kubetools/kube-tools

# Re-render daemonset/manifests/ from the Helm chart.
manifests:
	$(GO) test -count=1 -run '^TestManifestsUpToDate$$' ./daemonset/ -args -update

# The container image (Dockerfile: static binary on distroless). Needs
# Docker; nothing in CI builds it.
IMAGE  ?= nri-image-verifier:dev
DOCKER ?= docker
image:
	$(DOCKER) build -t $(IMAGE) .

# A kind cluster whose containerd requires the plugin (kind-config/), and
# the plugin installed on it with a refused pod to look at. Need Docker,
# kind and kubectl.
KIND_CLUSTER ?= nri-image-verifier
kind-up:
	kind create cluster --name $(KIND_CLUSTER) --config kind-config/kind.yaml

kind-demo: image
	KIND_CLUSTER=$(KIND_CLUSTER) IMAGE=$(IMAGE) kind-config/demo.sh
