#!/usr/bin/env bash
# Builds the upstream Kubernetes binaries the local cluster (hack/local-up.sh) and the
# kube-proxy side-by-side bench need, from the Go module proxy at the release pinned in
# hack/k8s/go.mod, and caches them per release. A warm cache makes this a no-op.
#
# Usage: hack/k8s/build.sh [binary...]     (default: kube-apiserver kube-controller-manager kube-proxy)
# Prints the bin directory on stdout as its last line; progress goes to stderr.
# Env:   SWITCHYARD_K8S_BIN   use this directory instead of the cache (must already hold the binaries)
#        FORCE=1              rebuild even when cached binaries exist
set -euo pipefail

K8S_VERSION=v1.31.4
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEFAULT_BINARIES=(kube-apiserver kube-controller-manager kube-proxy)

log() { printf '[k8s-build %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

bin_dir() {
	if [[ -n "${SWITCHYARD_K8S_BIN:-}" ]]; then
		echo "${SWITCHYARD_K8S_BIN}"
	else
		echo "${XDG_CACHE_HOME:-$HOME/.cache}/switchyard/k8s/${K8S_VERSION}/bin"
	fi
}

main() {
	local binaries=("$@")
	((${#binaries[@]})) || binaries=("${DEFAULT_BINARIES[@]}")
	local out
	out="$(bin_dir)"

	# The pinned release lives in go.mod; refuse to build something else under this name.
	if ! grep -q "k8s.io/kubernetes ${K8S_VERSION}\$" "${HERE}/go.mod"; then
		log "hack/k8s/go.mod does not require k8s.io/kubernetes ${K8S_VERSION}; fix one or the other"
		return 1
	fi

	local missing=()
	local b
	for b in "${binaries[@]}"; do
		if [[ "${FORCE:-0}" == 1 || ! -x "${out}/${b}" ]]; then
			missing+=("${b}")
		fi
	done
	if ((${#missing[@]} == 0)); then
		log "cached: ${binaries[*]} in ${out}"
		echo "${out}"
		return 0
	fi
	if [[ -n "${SWITCHYARD_K8S_BIN:-}" ]]; then
		log "SWITCHYARD_K8S_BIN=${SWITCHYARD_K8S_BIN} lacks: ${missing[*]}"
		return 1
	fi

	mkdir -p "${out}"
	# Version stamps like upstream's hack/lib/version.sh, so /version and user agents say v1.31.4.
	local pkg=k8s.io/component-base/version
	local minor="${K8S_VERSION#v1.}"
	minor="${minor%%.*}"
	local ldflags="-s -w"
	ldflags+=" -X ${pkg}.gitVersion=${K8S_VERSION} -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=${minor}"
	ldflags+=" -X ${pkg}.gitTreeState=clean -X ${pkg}.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"

	cd "${HERE}"
	log "downloading modules for k8s.io/kubernetes ${K8S_VERSION} (Go module proxy)"
	go mod download
	local start=${SECONDS}
	log "building ${missing[*]}: about 10 minutes in all from a cold Go build cache on 2 cores"
	for b in "${missing[@]}"; do
		local t0=${SECONDS}
		log "building ${b}"
		# Build into a temp name and rename, so an interrupted build never leaves a half binary
		# that the cache check above would accept.
		CGO_ENABLED=0 go build -trimpath -ldflags "${ldflags}" -o "${out}/.${b}.tmp" "k8s.io/kubernetes/cmd/${b}" &
		local pid=$!
		while kill -0 "${pid}" 2>/dev/null; do
			sleep 15
			kill -0 "${pid}" 2>/dev/null && log "  ${b}: still compiling ($((SECONDS - t0))s)"
		done
		wait "${pid}"
		mv -f "${out}/.${b}.tmp" "${out}/${b}"
		log "built ${b} in $((SECONDS - t0))s"
	done
	log "done in $((SECONDS - start))s: ${out}"
	echo "${out}"
}

main "$@"
