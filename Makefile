GO            ?= go
BIN           := bin/vigil
GOLANGCI_LINT := github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0
VERSION       ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS       := -s -w -X main.version=$(VERSION) -X main.commit=$(shell git rev-parse HEAD 2>/dev/null)

.PHONY: all build run test lint bench fuzz clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/vigil

# The whole pipeline on the example audit log with the embedded NATS server;
# alerts are printed as they arrive. Ctrl-C stops it. A fresh data dir each
# time, so the demo always shows its alerts.
run: build
	rm -rf .run
	./$(BIN) run --config examples/vigil.yaml

test:
	$(GO) test -race -count=1 ./...

lint:
	$(GO) vet ./...
	$(GO) run $(GOLANGCI_LINT) run ./...

# The Go micro-benchmarks, then `vigil bench` (the figures of
# docs/benchmarks.md). Run it on an otherwise idle machine.
bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./...
	./$(BIN) bench

clean:
	rm -rf bin .run
