# Weft's build. `make help` lists the targets; the README's commands are these.

GO      ?= go
BIN     ?= bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X weft.dev/weft/internal/version.Version=$(VERSION)
# Build tags and environment of both binaries: internal/version.BuildTags
# and BuildEnv say why, and its test keeps these lines equal to them.
TAGS     := grpcnotrace
BUILDENV := CGO_ENABLED=0
# Tests that start many processes are kept off each other on 2 cores.
TESTFLAGS ?= -count=1 -timeout 20m

.PHONY: help build up test test-race test-deps test-short lint fmt vet bench bench-quick bench-micro bench-deps bench-pack clean tools spire

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build bin/weft and bin/weft-proxy
	$(BUILDENV) $(GO) build -tags $(TAGS) -ldflags "$(LDFLAGS)" -o $(BIN)/weft ./cmd/weft
	$(BUILDENV) $(GO) build -tags $(TAGS) -ldflags "$(LDFLAGS)" -o $(BIN)/weft-proxy ./cmd/weft-proxy

up: build ## run the built-in demo mesh (weft up)
	$(BIN)/weft up

test: test-deps lint spire ## run every test (unit, integration, interop, end to end) after the linters, then the sidecar's under the race detector
	$(GO) test $(TESTFLAGS) ./...
	$(MAKE) test-race

test-race: ## the sidecar's packages (internal/proxy) under the race detector: its data path shares state between goroutines
	CGO_ENABLED=1 $(GO) test -race $(TESTFLAGS) ./internal/proxy/...

test-deps: ## install the system programs the tests run (curl, h2load, prometheus, iptables)
	scripts/test-deps.sh

test-short: ## run the fast tests only
	$(GO) test -short -count=1 ./...

lint: vet $(BIN)/tools/staticcheck ## go vet, gofmt check and staticcheck
	@out=$$(gofmt -l cmd internal examples test tools bench 2>/dev/null); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(BIN)/tools/staticcheck -checks inherit,-SA1019 ./...

# Third-party programs the tests and benchmarks run, built from tools/go.mod.
$(BIN)/tools/%: tools/go.mod tools/go.sum
	cd tools && $(GO) build -o ../$(BIN)/tools/ $$(awk '/^tool /{print $$2} /^tool \(/{t=1;next} t&&/^\)/{t=0} t{print $$1}' go.mod | grep '/$*$$')

vet: ## go vet
	$(GO) vet ./...

fmt: ## gofmt the tree
	gofmt -w cmd internal examples

tools: ## build the third-party test programs into bin/tools
	cd tools && $(GO) build -o ../$(BIN)/tools/ $$(awk '/^tool /{print $$2} /^tool \(/{t=1;next} t&&/^\)/{t=0} t{print $$1}' go.mod)
	cd tools/jaeger && $(GO) build -o ../../$(BIN)/tools/ github.com/jaegertracing/jaeger/cmd/jaeger
	$(MAKE) spire

# SPIRE's server and agent (tools/spire, their own module) for the SPIFFE
# Workload API end-to-end test. Built before `go test` runs, so that the
# 6-10 minute cold build (cgo SQLite) does not count against the test
# binary's timeout; go install relinks nothing when they are up to date.
# test/e2e/spire_test.go runs the same command: keep the flags equal.
spire: ## build spire-server and spire-agent (SPIRE v1.13.3) into bin/tools
	cd tools/spire && GOBIN=$(abspath $(BIN))/tools CGO_ENABLED=1 $(GO) install -ldflags=-s\ -w github.com/spiffe/spire/cmd/spire-server github.com/spiffe/spire/cmd/spire-agent

# The data-plane benchmark (bench/, docs/performance.md): fortio load through
# no proxy, Weft's sidecars and two hops of nginx, HAProxy and Caddy, in one
# run. Extra flags: make bench BENCHFLAGS='--services 1000 --paths baseline,weft'.
BENCHFLAGS ?=

bench: $(BIN)/tools/fortio ## data-plane benchmark vs nginx/HAProxy/Caddy, 30 s windows (~25 min; run bench-deps first)
	$(GO) build -o $(BIN)/weftbench ./bench/cmd/weftbench
	$(BIN)/weftbench --pprof $(BENCHFLAGS)

bench-quick: $(BIN)/tools/fortio ## the data-plane benchmark with 10 s windows (~10 min)
	$(GO) build -o $(BIN)/weftbench ./bench/cmd/weftbench
	$(BIN)/weftbench --quick --pprof $(BENCHFLAGS)

bench-pack: ## pack the benchmark, its peers and libraries into bin/weft-bench.tar.xz, to run on a larger machine (BASE=old weft-proxy)
	GO=$(GO) TAGS=$(TAGS) BUILDENV="$(BUILDENV)" bench/pack.sh $(BIN)/weft-bench.tar.xz $(BASE)

bench-deps: ## install the benchmark's peers and load generator (apt-get nginx haproxy; fortio, caddy)
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx haproxy >/dev/null; \
	else echo "bench-deps: not root or no apt-get: install nginx and haproxy yourself"; fi
	$(MAKE) $(BIN)/tools/fortio $(BIN)/tools/caddy

bench-micro: ## micro-benchmarks (go test -bench)
	$(GO) test -run '^$$' -bench . -benchmem ./internal/...

clean: ## remove build output
	rm -rf $(BIN)
