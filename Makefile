# The README's two commands are `make run` and `make test`.
#
#   make run          obtain the worker if needed, build and start the server (ARGS="..." for flags)
#   make test         install what the tests need, then lint + every test with -race + worker-check
#   make worker       the pinned mediasoup-worker at bin/mediasoup-worker (cached; see third_party/)
#   make worker-check mediasoup-go's own test suite against bin/mediasoup-worker
#   make build        bin/mediasoup-server
#   make web          the browser client: npm ci (pinned by web/package-lock.json) + esbuild → web/dist
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

# phase prints the phase a target is starting and the seconds since make
# started.
MAKE_START := $(shell date +%s)
phase = @echo "=== make: $(1) [$$(( $$(date +%s) - $(MAKE_START) )) s] ==="

# The browser client (web/): its npm packages are pinned by package-lock.json;
# the bundle in web/dist is build output.
WEB_DIR     := web
WEB_MODULES := $(WEB_DIR)/node_modules/.package-lock.json
# Debian packages the tests need: the browser test (web/browser_test.go), the
# broadcaster test, which runs ffmpeg as the demo's broadcasters/ffmpeg.sh, and
# the cluster tests, which start their own redis-server each.
TEST_APT_PACKAGES := chromium chromium-driver ffmpeg redis-server

.PHONY: run test worker worker-check build lint test-go deps clean web fuzz

run: worker build web
	@echo "Starting mediasoup-server (Ctrl-C to stop); open the URL it prints."
	$(SERVER_BIN) $(ARGS)

build:
	$(GO) build -o $(SERVER_BIN) ./cmd/mediasoup-server

# Always runs the recipe: it returns in a second when the cached binary for
# this version + recipe exists, and rebuilds when the recipe changed.
worker:
	$(call phase,worker: the pinned mediasoup-worker (cached))
	@MEDIASOUP_WORKER_BIN= ./third_party/mediasoup-worker/build.sh $(WORKER_BIN)

# mediasoup-go's own suite, run in its module (read-only cache is fine).
# One package at a time (-p 1): the suite gives each worker one second to
# start, which packages starting workers in parallel on a busy machine miss.
# One subtest is skipped, by name and loudly: mediasoup-go's PipeToRouter
# still races when two routers pipe to each other at the same moment (v2.6.0:
# two pipe pairs, crossed ports; seen on a busy machine). It is mediasoup-go's
# Go code, not the worker's, and the rooms do not use PipeToRouter (their
# own pipes: room/spread.go).
WORKER_CHECK_SKIP := TestPipeToRouter/PipeToRouter_called_in_two_Routers_passing_one_to_each_other
worker-check: worker
	$(call phase,worker-check: mediasoup-go's own suite against the worker)
	@dir=$$($(GO) list -m -f '{{.Dir}}' $(MEDIASOUP_GO)); \
	version=$$($(GO) list -m -f '{{.Version}}' $(MEDIASOUP_GO)); \
	echo "worker-check: mediasoup-go $$version suite against $(MEDIASOUP_WORKER_BIN)"; \
	echo "worker-check: skipping $(WORKER_CHECK_SKIP) (mediasoup-go's PipeToRouter race, see the Makefile)"; \
	cd "$$dir" && GOFLAGS=-mod=mod $(GO) test -p 1 -count=1 -skip '$(WORKER_CHECK_SKIP)' ./...

# Everything `make test` needs that Go modules do not bring.
deps:
	$(call phase,deps: Go modules and Debian packages)
	@command -v $(GO) >/dev/null || { echo "Go is required (https://go.dev/dl/)"; exit 1; }
	$(GO) mod download
	@command -v npm >/dev/null || { echo "Node.js and npm are required to build the web client (Debian: apt-get install nodejs npm)"; exit 1; }
	@missing=(); for p in $(TEST_APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$$p"); \
	done; \
	if (( $${#missing[@]} )); then \
		sudo=""; [ "$$(id -u)" = 0 ] || sudo=$$(command -v sudo || true); \
		if [ "$$(id -u)" != 0 ] && [ -z "$$sudo" ]; then echo "deps: need root (or sudo) to apt-get install $${missing[*]}"; exit 1; fi; \
		echo "deps: installing Debian packages: $${missing[*]}"; \
		$$sudo apt-get update -qq; \
		DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq "$${missing[@]}" >/dev/null; \
	fi

# Runs esbuild every time (under a second); npm ci only when the lock file
# changed or node_modules is missing.
web: $(WEB_MODULES)
	$(call phase,web: the browser client bundle)
	cd $(WEB_DIR) && node build.mjs

$(WEB_MODULES): $(WEB_DIR)/package.json $(WEB_DIR)/package-lock.json
	@command -v npm >/dev/null || { echo "npm is required to build the web client: run make deps"; exit 1; }
	cd $(WEB_DIR) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

lint:
	$(call phase,lint: gofmt + go vet + staticcheck)
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

test-go: web
	$(call phase,go test: every package with -race)
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...

# The protoo parser's fuzz target, bounded (FUZZTIME), on every make test.
FUZZTIME ?= 15s
fuzz:
	$(call phase,fuzz: the protoo parser for $(FUZZTIME))
	$(GO) test -run XXX -fuzz FuzzParseMessage -fuzztime $(FUZZTIME) ./signaling/

# Each phase announces itself (=== make: PHASE ===), so that a failure says
# where it happened; the last line says how long the whole run took.
test: deps worker lint web test-go fuzz worker-check
	@echo "=== make test: passed in $$(( $$(date +%s) - $(MAKE_START) )) s ==="

clean:
	rm -rf $(BIN)

# make bench: the Go benchmarks of the hot paths (they start real workers),
# then the load sweep of BENCHMARKS.md against a server on loopback
# (cmd/loadtest/sweep.sh; REPS, DURATION, PEERS, PORT, RTC_PORT tune it).
BENCH_COUNT ?= 1
.PHONY: bench
bench: worker build
	$(GO) test -run XXX -bench . -benchmem -count $(BENCH_COUNT) ./signaling/... ./room/
	./cmd/loadtest/sweep.sh

# make reliability: the full reliability suite of RELIABILITY.md (worker
# kills mid-call, churn soaks, misbehaving clients, 15,000 idle peers, the
# real binary's HTTP timeouts), then its figures. About 12 minutes. Without
# -race, so that the figures are the server's, not the race detector's; make
# test runs the quick versions with -race. RELIABILITY_ARGS adds flags, e.g.
# -soak 10m, -conns 5000, -kills 10.
RELIABILITY_ARGS ?=
.PHONY: reliability
reliability: worker
	@report=$$(mktemp); status=0; \
	$(GO) test -count=1 -timeout 60m ./reliability/ -args -full -report "$$report" $(RELIABILITY_ARGS) || status=$$?; \
	cat "$$report"; rm -f "$$report"; exit $$status
