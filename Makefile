# Switchyard's build and test entry points. `make test` is what CI runs (.ci/run) and what the README
# tells a newcomer to run; it installs everything it needs.
GO      ?= go
BIN     ?= bin
export CGO_ENABLED ?= 0

.PHONY: all build deps test unit privileged test-ipvs test-e2e lint clean

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

deps:
	hack/install-deps.sh

# The whole suite: static checks, unit tests, privileged tests in throwaway network namespaces, the
# IPVS tests inside a qemu VM, and the end-to-end tests against a real control plane.
test: deps build lint
	$(MAKE) privileged
	$(MAKE) test-ipvs
	$(MAKE) test-e2e

lint:
	@bad=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$bad" ]; then echo "gofmt needed: $$bad"; exit 1; fi
	$(GO) vet ./...

# Unit tests only: no root, no namespaces.
unit:
	$(GO) test -count=1 ./...

# Unit tests plus the privileged ones (they create and delete their own network namespaces).
privileged:
	SWITCHYARD_PRIVILEGED=1 $(GO) test -count=1 ./...

clean:
	rm -rf $(BIN)
