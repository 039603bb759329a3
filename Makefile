GO            ?= go
BIN           := bin/vigil
GOLANGCI_LINT := github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0
VERSION       ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS       := -s -w -X main.version=$(VERSION) -X main.commit=$(shell git rev-parse HEAD 2>/dev/null)
GOVULNCHECK   := golang.org/x/vuln/cmd/govulncheck@v1.9.0
# The Go vulnerability database, as published in golang.org/x/vulndb and
# served by the module proxy: vulncheck works where vuln.go.dev is not
# reachable, and a given commit always checks against the same data. Bump
# it to pick up new advisories.
VULNDB        := golang.org/x/vulndb@v0.0.0-20261105234957-e22db6528018
# The real Alertmanager the notify/alertmanager tests deliver to, built
# through the module proxy. v0.31.1 is the last release whose module
# builds with `go install` (later ones want UI assets built by npm).
ALERTMANAGER  := github.com/prometheus/alertmanager/cmd/alertmanager@v0.31.1
ALERTMANAGER_STAMP := bin/.alertmanager-$(lastword $(subst @, ,$(ALERTMANAGER)))

# go.mod names the patched toolchain (its `toolchain` line); build with it
# even where the installed Go is set to GOTOOLCHAIN=local, so binaries do not
# carry standard-library vulnerabilities fixed since. Override with
# GOTOOLCHAIN=local to build with whatever Go is installed.
GOTOOLCHAIN   ?= auto
export GOTOOLCHAIN

.PHONY: all build run test lint vulncheck bench fuzz clean alertmanager e2e-real

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/vigil

# The whole pipeline on the example audit log with the embedded NATS server;
# alerts are printed as they arrive. Ctrl-C stops it. A fresh data dir each
# time, so the demo always shows its alerts.
run: build
	rm -rf .run
	./$(BIN) run --config examples/vigil.yaml

# -timeout bounds each package's tests: the slowest (cmd/vigil, which runs
# vigil processes) takes about two minutes on 2 cores.
test: alertmanager
	$(GO) test -race -count=1 -timeout 8m ./...

# bin/alertmanager, installed once per version: the stamp names the
# version, so bumping ALERTMANAGER installs the new one.
alertmanager: $(ALERTMANAGER_STAMP)

$(ALERTMANAGER_STAMP):
	GOBIN=$(CURDIR)/bin $(GO) install $(ALERTMANAGER)
	touch $@

lint:
	$(GO) vet ./...
	$(GO) run $(GOLANGCI_LINT) run ./...

# govulncheck against the pinned database: fails if code reachable from
# vigil calls a known-vulnerable function of a dependency or of the standard
# library of the toolchain in use.
vulncheck:
	rm -rf .cache/vulndb
	dir=$$($(GO) mod download -json $(VULNDB) | sed -n 's/.*"Dir": "\(.*\)".*/\1/p') && \
	$(GO) run $(subst @,/cmd/indexdb@,$(VULNDB)) -vulns "$$dir/data/osv" -out .cache/vulndb
	$(GO) run $(GOVULNCHECK) -db file://$(CURDIR)/.cache/vulndb ./...

# The Go micro-benchmarks, then `vigil bench` (the figures of
# docs/benchmarks.md). Run it on an otherwise idle machine.
bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./...
	./$(BIN) bench

# vigil beside a real kube-apiserver, controller-manager and etcd, with
# attack scenarios, rotations and a SIGKILL (scripts/e2e-real/run.sh). Not
# part of `make test`: the first run builds the control plane (about 15
# minutes), and every run takes a few minutes more.
e2e-real:
	bash scripts/e2e-real/run.sh

clean:
	rm -rf bin .run .cache
