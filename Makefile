# The README's two commands: `go run ./cmd/trellis up -f examples/bookinfo/mesh.yaml` and `make test`.
GO      ?= go
BIN     ?= bin/trellis
PKGS    := ./...

.PHONY: build test unit e2e bench lint fmt fuzz clean tools

# CGO_ENABLED=0: one static binary, no libc or loader mapped into every
# sidecar (test/e2e TestBinaryIsStatic). -race builds need cgo, so tests
# built with the race detector link dynamically.
build:
	CGO_ENABLED=0 $(GO) build -o $(BIN) ./cmd/trellis

# Everything CI runs: formatting and vet, unit tests with the race detector,
# the end-to-end suite (real processes on loopback), and each fuzz target briefly.
test: lint tools unit e2e fuzz

# Test tools that are Go programs, installed into $(go env GOPATH)/bin where
# the tests look for them: h2spec checks the sidecar's HTTP/2 server
# against RFC 9113 and RFC 7541 (internal/proxy/h2srv TestH2Spec).
H2SPEC_VERSION ?= v2.2.1+incompatible
tools:
	$(GO) install github.com/summerwind/h2spec/cmd/h2spec@$(H2SPEC_VERSION)

unit:
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /test/e2e)

# E2E_RACE=1 builds the binary under test with -race: a data race in any
# control plane, sidecar or app process fails the suite.
# The attacks with CPU and memory bounds run again on a normal build: the
# race detector's own cost would hide what the bounds measure.
e2e:
	E2E_RACE=1 $(GO) test -count=1 -timeout 15m ./test/e2e/
	$(GO) test -count=1 -timeout 5m -run 'TestBinaryIsStatic$$|TestAttacks$$/(h2-rapid-reset|h2-continuation-flood|oversized-bodies)$$' ./test/e2e/

# Each native fuzz target for a few seconds; FUZZTIME=1m for a longer look.
fuzz:
	FUZZTIME=$(FUZZTIME) GO=$(GO) scripts/fuzz.sh
FUZZTIME ?= 5s

bench:
	bench/run.sh

# gofmt and go vet always; golangci-lint (config in .golangci.yml) when installed.
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt wants to change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	@if command -v golangci-lint >/dev/null; then golangci-lint run; else echo "golangci-lint not installed; skipped (go vet ran)"; fi

clean:
	rm -rf bin bench/out
