# Airlock — see README.md. `make dev` runs the whole stack locally;
# `make test` is what CI runs (.ci/run).
GO ?= go
# The server cache lives under $HOME/.cache/airlock: make sure HOME is set
# even in a bare CI environment.
HOME ?= $(shell getent passwd $$(id -u) | cut -d: -f6)
export HOME
TEST_FLAGS ?= -race -count=1 -timeout 30m

.PHONY: dev test tools build lint bench chaos schema

## tools: build the real dev/test servers once (cached by the tools go.sum)
tools:
	@tools/build.sh

build:
	$(GO) build ./...

## schema: regenerate the published JSON Schemas (schema/*.schema.json) from
## the Go types in contract/ and policy/; go test ./schema fails while they are stale
schema:
	$(GO) generate ./schema

## lint: formatting and vet
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^tools/')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

## test: servers, lint, every fuzz target briefly, then unit + integration +
## end-to-end + chaos tests on the real stack
CI_FUZZTIME ?= 5s
test: tools lint
	@$(MAKE) --no-print-directory fuzz FUZZTIME=$(CI_FUZZTIME)
	$(GO) test $(TEST_FLAGS) ./...
	cd tools/deploycheck && $(GO) test $(TEST_FLAGS) ./...

## dev: the whole stack + worker + a sample agent cycle; Ctrl-C stops it
dev: tools
	$(GO) run ./cmd/airlock dev

## chaos: the fault-injection suite at full size (CI runs it smaller in make test):
## worker processes SIGKILLed at random while 120 cycles of every phase run,
## 200 concurrent cycles on one worker, Temporal and apiserver restarts.
## CHAOS_SEED=<n> replays a kill schedule.
chaos: tools
	CHAOS_CYCLES=$${CHAOS_CYCLES:-120} CHAOS_LOAD=$${CHAOS_LOAD:-200} $(GO) test -count=1 -timeout 60m -v ./chaos/

## bench: latency of a cycle vs. the same raw Vault + Kubernetes calls, the
## kill switch with 20 running Jobs (30 kills), and the scale benchmarks
## (concurrent cycles, shadow throughput, history size, the Agent workflow's
## report throughput), and a cycle on the
## real node (root on Linux; skipped elsewhere)
bench: tools
	$(GO) test -run '^$$' -bench 'CycleOverhead|ApprovalClick|KillSwitch' -benchtime 30x ./e2e/
	$(GO) test -run '^$$' -bench 'ConcurrentCycles|ShadowThroughput|AgentReports' -benchtime 2x ./e2e/
	$(GO) test -count=1 -v -run TestHistorySizePerPhase ./e2e/
	$(GO) test -run '^$$' -bench RealNodeCycle -benchtime 10x ./isolation/
	CHAOS_WAITING=$${CHAOS_WAITING:-10000} $(GO) test -count=1 -timeout 90m -v -run TestManyWaitingCycles ./chaos/

## fuzz: every fuzz target for $(FUZZTIME) each, one after another.
## FUZZFLAGS bounds the minimizing of each new input (go's default is 60s,
## which would take a short run's whole budget).
FUZZTIME ?= 10s
FUZZFLAGS ?= -fuzzminimizetime 5s
.PHONY: fuzz
# Every Fuzz function in the product's tests (tools/ aside), as pkg:Func.
# (lparen: make counts a bare parenthesis in $(shell) as its own.)
lparen := (
FUZZ_TARGETS = $(shell git grep -E '^func Fuzz[A-Za-z0-9_]*[$(lparen)]' -- '*_test.go' ':!tools' | \
	sed -E 's|^(.*)/[^/]*_test[.]go:func (Fuzz[A-Za-z0-9_]*)[$(lparen)].*|./\1/:\2|' | sort)
fuzz:
	@FUZZTIME=$(FUZZTIME) FUZZFLAGS="$(FUZZFLAGS)" GO=$(GO) tools/fuzz.sh $(FUZZ_TARGETS)

## image: the airlock OCI image without a Docker daemon, reproducibly
## (static binary, -trimpath, fixed mtimes, user 65532, no shell): writes
## bin/airlock-oci (OCI layout) and bin/airlock-image.tar (docker load -i)
## and prints the digest. SOURCE_DATE_EPOCH sets the file times.
.PHONY: image
image:
	cd tools/deploycheck && $(GO) run ./cmd/mkimage -repo ../.. -out ../../bin
