# Weft's build. `make help` lists the targets; the README's commands are these.

GO      ?= go
BIN     ?= bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X weft.dev/weft/internal/version.Version=$(VERSION)
# Tests that start many processes are kept off each other on 2 cores.
TESTFLAGS ?= -count=1 -timeout 20m

.PHONY: help build up test test-short lint fmt vet bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build bin/weft and bin/weft-proxy
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/weft ./cmd/weft
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/weft-proxy ./cmd/weft-proxy

up: build ## run the built-in demo mesh (weft up)
	$(BIN)/weft up

test: ## run every test: unit, integration, interop and end to end
	$(GO) vet ./...
	$(GO) test $(TESTFLAGS) ./...

test-short: ## run the fast tests only
	$(GO) test -short -count=1 ./...

lint: vet ## go vet and gofmt check
	@out=$$(gofmt -l cmd internal examples test 2>/dev/null); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet: ## go vet
	$(GO) vet ./...

fmt: ## gofmt the tree
	gofmt -w cmd internal examples

bench: ## micro-benchmarks (go test -bench)
	$(GO) test -run '^$$' -bench . -benchmem ./internal/...

clean: ## remove build output
	rm -rf $(BIN)
