# Switchyard's build and test entry points. `make test` is what CI runs (.ci/run) and what the README
# tells a newcomer to run; it installs everything it needs.
GO      ?= go
BIN     ?= bin
export CGO_ENABLED ?= 0

.PHONY: all build deps check-deps demo test unit privileged test-ipvs test-vm-selftest test-e2e test-e2e-ipvs lint clean

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

deps:
	hack/install-deps.sh

# Fails when the tree runs a program that neither every Debian install, nor the Go toolchain, nor
# hack/install-deps.sh, nor the tree's own build provides: a package installed by hand on the machine
# that runs CI must not hide a missing install step.
check-deps: deps
	hack/check-deps.sh

# The main job: a 3-node local cluster (real kube-apiserver and kube-controller-manager, nodes and
# pods in network namespaces), a few services, requests across nodes and a readable report. Pass
# DEMO_ARGS=--keep to keep the cluster for exploring.
demo: deps build
	SWITCHYARD_BIN_DIR=$(CURDIR)/$(BIN) hack/demo.sh $(DEMO_ARGS)

# The whole suite: static checks, unit tests, privileged tests in throwaway network namespaces, the
# IPVS tests inside a qemu VM, and the end-to-end tests against a real control plane.
test: deps check-deps build lint
	$(MAKE) privileged
	$(MAKE) test-ipvs
	$(MAKE) test-e2e
	$(MAKE) test-e2e-ipvs

lint:
	@bad=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$bad" ]; then echo "gofmt needed: $$bad"; exit 1; fi
	$(GO) vet ./...

# Unit tests only: no root, no namespaces.
unit:
	$(GO) test -count=1 ./...

# Unit tests plus the privileged ones (they create and delete their own network namespaces).
privileged:
	SWITCHYARD_PRIVILEGED=1 $(GO) test -count=1 ./...

# End-to-end tests against a real kube-apiserver and kube-controller-manager (built once from the
# Go module proxy at the pinned release and cached) with nodes in network namespaces. One package at a
# time: they share the local cluster.
test-e2e: build
	SWITCHYARD_PRIVILEGED=1 SWITCHYARD_BIN_DIR=$(CURDIR)/$(BIN) $(GO) test -tags e2e -count=1 -p 1 -timeout 40m ./e2e/...

# IPVS-mode ClusterIP and NodePort end-to-end scenarios: the control plane on this machine's loopback,
# the real switchyard in the qemu VM of hack/vm (hack/vm/README.md). Builds its own static binaries.
test-e2e-ipvs:
	SWITCHYARD_PRIVILEGED=1 $(GO) test -tags ipvsvm -count=1 -p 1 -v -timeout 30m -run '^TestIPVSVM$$' ./e2e/ipvsvm/

# The IPVS backend's real-kernel tests need ip_vs, which this machine's kernel lacks: they run in a
# qemu VM with Debian's kernel (hack/vm/README.md), and so does `switchyard bench`'s IPVS apply. Emulated, so expect minutes, not seconds. The
# -test.list guard fails the target if there is no TestRealKernel* test, rather than passing on zero.
test-ipvs:
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	CGO_ENABLED=0 $(GO) test -c -o "$$tmp/ipvs.test" ./proxier/ipvs; \
	if ! "$$tmp/ipvs.test" -test.list 'TestRealKernel' | grep -q .; then \
		echo "test-ipvs: ./proxier/ipvs has no TestRealKernel* test to run" >&2; exit 1; fi; \
	hack/vm/run.sh --env SWITCHYARD_PRIVILEGED=1 --env SWITCHYARD_IPVS_KERNEL=1 "$$tmp/ipvs.test" -test.v -test.run 'TestRealKernel'; \
	CGO_ENABLED=0 $(GO) test -c -o "$$tmp/bench.test" ./proxier/bench; \
	hack/vm/run.sh --env SWITCHYARD_PRIVILEGED=1 --env SWITCHYARD_IPVS_KERNEL=1 "$$tmp/bench.test" -test.v -test.run 'TestApplyIPVS|TestLabNeedsTheRules'

# Proves the qemu VM harness of hack/vm: its shell checks in the guest, then the Go test of
# e2e/vmselftest (build tag vmselftest), which sends TCP through a real IPVS virtual server there.
test-vm-selftest:
	hack/vm/selftest.sh --go

clean:
	rm -rf $(BIN)
