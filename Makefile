# The README's two commands are `make run` and `make test`.
#
#   make run          obtain the worker if needed, build and start the server (ARGS="..." for flags)
#   make test         install what the tests need, then lint + every test with -race + worker-check
#   make worker       the pinned mediasoup-worker at bin/mediasoup-worker (cached; see third_party/)
#   make worker-check mediasoup-go's own test suite against bin/mediasoup-worker
#   make build        bin/mediasoup-server
#   make lint         gofmt, go vet, staticcheck

SHELL       := bash
.SHELLFLAGS := -eu -o pipefail -c
GO          ?= go
BIN         := $(CURDIR)/bin
WORKER_BIN  := $(BIN)/mediasoup-worker
SERVER_BIN  := $(BIN)/mediasoup-server
# Pinned tool versions (fetched through the Go module proxy).
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
MEDIASOUP_GO := github.com/jiyeyuran/mediasoup-go/v2
TEST_TIMEOUT ?= 30m
ARGS        ?=

export MEDIASOUP_WORKER_BIN ?= $(WORKER_BIN)

.PHONY: run test worker worker-check build lint test-go deps clean

run: worker build
	@echo "Starting mediasoup-server (Ctrl-C to stop); open the URL it prints."
	$(SERVER_BIN) $(ARGS)

build:
	$(GO) build -o $(SERVER_BIN) ./cmd/mediasoup-server

# Always runs the recipe: it returns in a second when the cached binary for
# this version + recipe exists, and rebuilds when the recipe changed.
worker:
	@MEDIASOUP_WORKER_BIN= ./third_party/mediasoup-worker/build.sh $(WORKER_BIN)

# mediasoup-go's own suite, run in its module (read-only cache is fine).
worker-check: worker
	@dir=$$($(GO) list -m -f '{{.Dir}}' $(MEDIASOUP_GO)); \
	echo "worker-check: mediasoup-go $$($(GO) list -m -f '{{.Version}}' $(MEDIASOUP_GO)) suite against $(MEDIASOUP_WORKER_BIN)"; \
	cd "$$dir" && GOFLAGS=-mod=mod $(GO) test -count=1 ./...

# Everything `make test` needs that Go modules do not bring.
deps:
	@command -v $(GO) >/dev/null || { echo "Go is required (https://go.dev/dl/)"; exit 1; }
	$(GO) mod download

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

test-go:
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...

test: deps worker lint test-go worker-check

clean:
	rm -rf $(BIN)
