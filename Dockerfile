# syntax=docker/dockerfile:1
# friendgate: one static binary on a distroless, non-root base.
#
# The base images are build arguments so a release pins them by digest, for example
#   --build-arg GO_IMAGE=golang:1.26.8-bookworm@sha256:<digest>
#   --build-arg BASE_IMAGE=gcr.io/distroless/static-debian12:nonroot@sha256:<digest>
# (docs/install.md, "Image"). The build stage's command is the one `make docker-build-check`
# runs with the local Go toolchain.
ARG GO_IMAGE=golang:1.26.8-bookworm
ARG BASE_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM --platform=$BUILDPLATFORM ${GO_IMAGE} AS build
ARG TARGETOS=linux
ARG TARGETARCH=amd64
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY api/ api/
COPY cmd/ cmd/
COPY controllers/ controllers/
COPY internal/ internal/
COPY webhook/ webhook/
COPY main.go ./
RUN CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath -ldflags="-s -w" -o /out/friendgate .

FROM ${BASE_IMAGE}
COPY --from=build /out/friendgate /friendgate
# The distroless nonroot user; the chart also sets runAsNonRoot and a read-only root.
USER 65532:65532
ENTRYPOINT ["/friendgate"]
