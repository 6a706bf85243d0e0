# nri-image-verifier. `make test` is what CI runs (.ci/run).
GO        ?= go
TAGS      ?= nri_no_wasm
BIN       ?= bin
GOFLAGS_T := -tags $(TAGS)

.PHONY: all build test unit vet fmt lint demo e2e bench fuzz clean
.PHONY: kube-tools manifests image kind-up kind-demo cluster-demo

all: build

build:
	$(GO) build $(GOFLAGS_T) -trimpath -o $(BIN)/nri-image-verifier ./cmd/nri-image-verifier

vet:
	$(GO) vet $(GOFLAGS_T) ./...

# Unit and integration tests. Everything runs on loopback; nothing is mocked
# that can run here for real (NRI runtime side, OCI registry, signatures).
test: vet kube-tools
	$(GO) test $(GOFLAGS_T) -race -count=1 -timeout 20m ./...

# The edit-test loop: the packages that ship in the binary, with -race, and
# none of the harnesses that build or start containerd, kube-apiserver or
# helm (integration/, bench/, daemonset/, kind-config/, internal/). Under a
# minute with Go's build cache warm; `make test` runs these and the rest.
UNIT_PKGS = $(shell $(GO) list ./... | grep -Ev '/(integration|bench|internal|daemonset|kind-config)(/|$$)')
unit:
	$(GO) test $(GOFLAGS_T) -race -count=1 -timeout 5m $(UNIT_PKGS)

# Every Go file gofmt'ed (make lint runs it).
fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# The performance report (docs/performance.md says how to read it): every
# target measured side by side with its peer in one run, on this machine.
# Speed targets live here, never in timed tests. 3-5 minutes; the first run
# also builds the cosign peer (bench/cosignpeer, a module of its own) from
# the Go module proxy. As root it adds the real-containerd section
# (NIV_SKIP_CONTAINERD=1 skips it). The report is printed and written to
# BENCH_OUT: BENCHMARKS.md, committed from a run on the reference machine.
BENCH_OUT ?= BENCHMARKS.md
bench:
	@mkdir -p $(dir $(BENCH_OUT))
	$(GO) test $(GOFLAGS_T) -count=1 -timeout 30m -run '^TestReport$$' -v ./bench/ -args -report -out $(abspath $(BENCH_OUT))
	@cat $(BENCH_OUT)

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

# Every fuzz target (each `func Fuzz...` in a _test.go file), one after the
# other, for FUZZTIME each: CI runs a few seconds each, FUZZTIME=10m (or
# FUZZ=FuzzBundle to pick targets by regexp) for a longer hunt. A failing
# input is written to the package's testdata/fuzz/, where `go test` then
# replays it. FUZZMINTIME bounds the minimisation of each newly interesting
# input: at Go's default (60 s) a target whose executions cost milliseconds
# (bundles, registry round trips) spends a short run minimising, not
# fuzzing, and reports a handful of executions.
FUZZTIME    ?= 10s
FUZZMINTIME ?= 1s
FUZZ        ?= .
fuzz:
	FUZZTIME=$(FUZZTIME) FUZZMINTIME=$(FUZZMINTIME) FUZZ='$(FUZZ)' GO=$(GO) TAGS=$(TAGS) hack/fuzz.sh

# Static analysis: gofmt (make fmt), go vet, then tools pinned and run from
# the Go module proxy (built once, then cached): staticcheck on the code
# that ships (test files are vet's; without them, U1000 would call helpers
# used only by tests unused); gosec on everything but the test harnesses,
# which build and run third-party tools and are never part of the daemon
# (integration/, bench/, tools/ and the internal/*test packages that start
# processes, listed below). Each finding in shipped code is
# fixed or carries a `#nosec G<nnn> -- reason`.
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
GOSEC       ?= github.com/securego/gosec/v2/cmd/gosec@v2.30.0
lint: vet fmt
	$(GO) run $(STATICCHECK) -tags $(TAGS) -tests=false -checks inherit,-U1000 ./...
	$(GO) run $(GOSEC) -quiet -tags $(TAGS) \
	  -exclude-dir=integration -exclude-dir=internal/containerdtest -exclude-dir=internal/daemontest \
	  -exclude-dir=internal/faulttest -exclude-dir=internal/kubetest -exclude-dir=internal/kubetoolstest \
	  -exclude-dir=internal/notarytest -exclude-dir=internal/nritest -exclude-dir=internal/attacktest -exclude-dir=bench -exclude-dir=tools ./...

clean:
	rm -rf $(BIN)

# A real single-node Kubernetes cluster on this machine, no Docker or kind:
# the control plane and kubelet from kube-tools, the real containerd, the
# plugin installed from daemonset/chart, a signed and a refused pod. It
# prints a KUBECONFIG and the built kubectl, and tears everything down on
# Ctrl-C. Root; see hack/cluster-demo.sh. The same cluster runs the story
# test in integration/cluster (part of `make test`).
cluster-demo: kube-tools
	hack/cluster-demo.sh

# kube-apiserver, etcd and helm for the Kubernetes tests (integration/kube,
# integration/containerd's Events case, daemonset), and kubelet,
# kube-controller-manager, kube-scheduler and kubectl for the cluster
# (integration/cluster, cluster-demo), built from the Go module proxy
# through the nested module tools/kube and cached outside the clone, keyed
# by its go.mod and go.sum (cold: 10-15 min, ~3 GB; ~5 min with Go's build
# cache warm). `make test` runs
# it first so that the build is a step of its own; the tests build on a
# cache miss too.
kube-tools:
	$(GO) run ./internal/kubetoolstest/kube-tools

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
