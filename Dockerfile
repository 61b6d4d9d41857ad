# syntax=docker/dockerfile:1
#
# mediasoup-server in one image: the pinned mediasoup-worker (built from
# source with the recipe of `make worker`), the Go server, the browser client.
#
#   docker build -t mediasoup-server .
#   docker run --rm --network host mediasoup-server        # see README "Docker"
#
# Build args: WORKER_BUILD_JOBS (parallel C++ jobs; default: all CPUs).

# ---- 1. the mediasoup worker: same recipe as `make worker` (no Go here) ----
FROM debian:bookworm AS worker
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      meson ninja-build pkg-config build-essential python3 libuv1-dev libssl-dev \
      libsrtp2-dev libabsl-dev libflatbuffers-dev flatbuffers-compiler \
      nodejs npm ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY third_party/mediasoup-worker/ third_party/mediasoup-worker/
ARG WORKER_BUILD_JOBS=
# build.sh fetches mediasoup from the npm registry (integrity pinned),
# patches it and builds it against the Debian libraries installed above.
RUN MEDIASOUP_WORKER_CACHE=/tmp/worker-cache WORKER_BUILD_JOBS="${WORKER_BUILD_JOBS:-$(nproc)}" \
      ./third_party/mediasoup-worker/build.sh /out/mediasoup-worker

# ---- 2. the browser client (web/dist), as `make web` builds it ----
FROM node:22-bookworm-slim AS web
WORKDIR /src/web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY web/ ./
RUN node build.mjs

# ---- 3. the Go server ----
FROM golang:1.26-bookworm AS server
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/mediasoup-server ./cmd/mediasoup-server

# ---- 4. runtime: the worker's shared libraries and nothing else ----
FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libuv1 libssl3 libsrtp2-1 libabsl20220623 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin mediasoup
WORKDIR /app
COPY --from=worker /out/mediasoup-worker /app/bin/mediasoup-worker
COPY --from=server /out/mediasoup-server /app/bin/mediasoup-server
COPY --from=web /src/web/dist /app/web/dist
COPY config/mediasoup-server.sample.yaml /app/config/mediasoup-server.sample.yaml
# In a container the media ports must listen on every interface; the
# announced address is detected (first non-loopback IPv4, logged) unless
# MEDIASOUP_SERVER_WORKER_ANNOUNCED_ADDRESS says otherwise: see README.
ENV MEDIASOUP_WORKER_BIN=/app/bin/mediasoup-worker \
    MEDIASOUP_SERVER_WEB_DIR=/app/web/dist \
    MEDIASOUP_SERVER_WORKER_LISTEN_IP=0.0.0.0
USER mediasoup
# HTTP/WebSocket, then UDP+TCP 44444+i for worker i (publish one per worker).
EXPOSE 4443/tcp 44444/udp 44444/tcp
STOPSIGNAL SIGTERM
ENTRYPOINT ["/app/bin/mediasoup-server"]
