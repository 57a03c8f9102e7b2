# kmep — ETSI MEC platform on Knative. `make help` lists the targets.
GO      ?= go
BIN     ?= bin
PKGS    ?= ./...
BENCHTIME ?= 1s
# VERSION is what every binary's --version prints (server.Version).
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS ?= -X github.com/kmep-io/kmep/store/kit/server.version=$(VERSION)

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets.
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "} {printf "  %-10s %s\n", $$1, $$2}'

.PHONY: run
run: ## Build and start the all-in-one platform on 127.0.0.1:8080 (KMEP_ADDR overrides).
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/kmep ./local/cmd/kmep
	$(BIN)/kmep

.PHONY: test
test: testbins ## Run every test with the race detector (needs redis-server on PATH; builds the test servers once).
	$(GO) test -race -count=1 $(PKGS)

.PHONY: testbins
testbins: ## Build the real servers tests start (MinIO, etcd, kube-apiserver, CoreDNS) into ~/.cache/kmep/testbin, once.
	./local/testenv/testbins.sh

.PHONY: bench
bench: ## Run the Go benchmarks and the HTTP load benchmark (figures for the closing note).
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) $(PKGS)
	$(GO) run ./local/cmd/kmepbench

.PHONY: lint
lint: ## go vet and a gofmt check.
	$(GO) vet $(PKGS)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

.PHONY: build
build: ## Build every binary into ./bin.
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/token ./functions/token/cmd
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/services ./functions/services/cmd
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/subscriptions ./functions/subscriptions/cmd
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/appsupport ./functions/appsupport/cmd
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/lcm ./functions/lcm/cmd
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/packages ./functions/packages/cmd
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/instantiate ./functions/instantiate/cmd
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/notify ./triggers/notify/cmd
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/deadletter ./triggers/deadletter/cmd
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/installer ./triggers/installer/cmd
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/relay ./longrunning/relay/cmd
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/reaper ./longrunning/reaper/cmd
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/mepagent ./longrunning/mepagent/cmd
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/upfagent ./longrunning/upfagent/cmd
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/meshagent ./longrunning/meshagent/cmd
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/kmep ./local/cmd/kmep
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/kmepctl ./local/cmd/kmepctl

.PHONY: fuzz
fuzz: ## Run each fuzz target for FUZZTIME (default 30s).
	$(GO) test -run '^$$' -fuzz FuzzParseAuthorization -fuzztime $${FUZZTIME:-30s} ./store/kit/aksk/
	$(GO) test -run '^$$' -fuzz FuzzDecodeServiceInfo -fuzztime $${FUZZTIME:-30s} ./store/mec/
	$(GO) test -run '^$$' -fuzz FuzzValidate -fuzztime $${FUZZTIME:-30s} ./store/kit/callback/
	$(GO) test -run '^$$' -fuzz FuzzAnswer -fuzztime $${FUZZTIME:-30s} ./longrunning/meshagent/nameserver/

.PHONY: binapi-upf
binapi-upf: ## Regenerate the UPF agent's mp2 binapi from its committed .api.json (govpp's binapi-generator).
	$(GO) tool binapi-generator --input=longrunning/upfagent/mp2upf/api --output-dir=longrunning/upfagent/mp2upf/binapi --no-source-path-info --gen=

# The local cluster (real Kubernetes + Knative on this machine): local/cluster/cluster.mk.
-include local/cluster/cluster.mk

# The kind path (needs Docker; kind, ko, kn): local/kind/kind.mk.
-include local/kind/kind.mk
