# For people who build with Docker. `make image` builds the same layout
# without a daemon (tools/deploycheck/cmd/mkimage) and is what CI checks;
# this file is not exercised where Docker is unavailable.
#   docker build -t airlock:dev .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ENV CGO_ENABLED=0 GOOS=linux
RUN go build -trimpath -buildvcs=false -ldflags="-s -w -buildid=" -o /out/airlock ./cmd/airlock \
 && cd tools/deploycheck && go build -trimpath -buildvcs=false -ldflags="-s -w -buildid=" -o /out/healthcheck ./cmd/healthcheck

# distroless static: CA certificates, /etc/passwd with nonroot (65532), /tmp;
# no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/airlock /airlock
COPY --from=build /out/healthcheck /healthcheck
USER 65532:65532
ENTRYPOINT ["/airlock"]
CMD ["help"]
