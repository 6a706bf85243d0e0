# syntax=docker/dockerfile:1
# The nri-image-verifier image: one static binary on distroless, no shell,
# no package manager. `make image` builds it; nothing in CI does.
#
# The image's user is non-root (65532). The Helm chart runs the container
# as uid 0 with every capability dropped, because containerd's NRI socket
# lives in a root-only folder; anything else that runs it (the `verify` and
# `policy` commands) needs no root.

ARG GO_VERSION=1.26.8

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS TARGETARCH
# nri_no_wasm leaves out NRI's WebAssembly plugin runtime, which the plugin
# does not use; CGO off makes the binary static for distroless/static.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -tags nri_no_wasm -trimpath -ldflags="-s -w" -o /out/nri-image-verifier ./cmd/nri-image-verifier

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/nri-image-verifier /usr/bin/nri-image-verifier
USER 65532:65532
ENTRYPOINT ["/usr/bin/nri-image-verifier"]
CMD ["run", "--policy=/etc/nri-image-verifier/policy/policy.yaml"]
