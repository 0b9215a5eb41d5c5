#!/usr/bin/env bash
# Builds the upstream Kubernetes binaries the local cluster (hack/local-up.sh) and the
# kube-proxy side-by-side bench need, from the Go module proxy at the release pinned in
# hack/k8s/go.mod, and caches them per release. A warm cache makes this a no-op.
#
# Usage: hack/k8s/build.sh [binary...]     (default: kube-apiserver kube-controller-manager kube-proxy)
#        hack/k8s/build.sh --pin           rewrite go.mod and go.sum for K8S_VERSION (below)
# Prints the bin directory on stdout as its last line; progress goes to stderr.
#
# Pinning another release is one line: change K8S_VERSION below, run `hack/k8s/build.sh --pin`
# and commit build.sh, go.mod and go.sum. hack/lib/common.sh reads K8S_VERSION from this file.
# Env:   SWITCHYARD_K8S_BIN   use this directory instead of the cache (must already hold the binaries)
#        FORCE=1              rebuild even when cached binaries exist
set -euo pipefail

# The one pin of the upstream release; see the header for how to move it.
K8S_VERSION=v1.37.2
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

# pin writes go.mod for K8S_VERSION from that release's own go.mod: k8s.io/kubernetes replaces
# each of its staging modules (k8s.io/api, client-go, ...) with ./staging/src/k8s.io/<name>,
# which a module outside its tree cannot use, so ours replaces each with its published v0.Y.Z
# tag instead. Upstream's go and godebug lines are copied too: they set the language version and
# GODEBUG defaults the binaries are built with, as they would be in upstream's own tree.
pin() {
	cd "${HERE}"
	local upstream staging
	upstream="$(go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
	[[ -s "${upstream}" ]] || {
		log "could not download k8s.io/kubernetes@${K8S_VERSION}'s go.mod"
		return 1
	}
	staging="v0.${K8S_VERSION#v1.}"
	{
		echo "module github.com/switchyard/switchyard/hack/k8s"
		echo
		grep -E '^(go|godebug) ' "${upstream}"
		echo
		echo "require k8s.io/kubernetes ${K8S_VERSION}"
		echo
		echo "replace ("
		awk -v v="${staging}" '$2 == "=>" && $3 ~ /^\.\/staging\// { printf "\t%s => %s %s\n", $1, $1, v }' "${upstream}"
		echo ")"
	} >go.mod.new
	mv go.mod.new go.mod
	log "go.mod: k8s.io/kubernetes ${K8S_VERSION}, $(grep -c " => .* ${staging}\$" go.mod) staging modules at ${staging}; tidying"
	rm -f go.sum
	go mod tidy
	echo "${HERE}/go.mod"
}

main() {
	if [[ "${1:-}" == --pin ]]; then
		pin
		return
	fi
	local binaries=("$@")
	((${#binaries[@]})) || binaries=("${DEFAULT_BINARIES[@]}")
	local out
	out="$(bin_dir)"

	# The pinned release lives in go.mod; refuse to build something else under this name.
	if ! grep -q "k8s.io/kubernetes ${K8S_VERSION}\$" "${HERE}/go.mod"; then
		log "hack/k8s/go.mod does not require k8s.io/kubernetes ${K8S_VERSION}; run hack/k8s/build.sh --pin"
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
	# Version stamps like upstream's hack/lib/version.sh, so /version and user agents say ${K8S_VERSION}.
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
