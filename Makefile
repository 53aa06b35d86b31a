# Airlock — see README.md. `make dev` runs the whole stack locally;
# `make test` is what CI runs (.ci/run).
GO ?= go
# The server cache lives under $HOME/.cache/airlock: make sure HOME is set
# even in a bare CI environment.
HOME ?= $(shell getent passwd $$(id -u) | cut -d: -f6)
export HOME
TEST_FLAGS ?= -race -count=1 -timeout 30m

.PHONY: dev test tools build lint bench

## tools: build the real dev/test servers once (cached by the tools go.sum)
tools:
	@tools/build.sh

build:
	$(GO) build ./...

## lint: formatting and vet
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^tools/')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

## test: servers, lint, unit + integration + end-to-end tests on the real stack
test: tools lint
	$(GO) test $(TEST_FLAGS) ./...

## dev: the whole stack + worker + a sample agent cycle; Ctrl-C stops it
dev: tools
	$(GO) run ./cmd/airlock dev

## bench: latency of a cycle vs. the same raw Vault + Kubernetes calls
bench: tools
	$(GO) test -run '^$$' -bench . -benchtime 30x ./e2e/
