#!/usr/bin/env bash
# Side-by-side bench (issue 6): upstream kube-proxy (iptables and nftables modes) against
# Switchyard (iptables mode), one after the other in the same node namespace of a one-node local
# cluster, against the same workload of selector-less Services plus EndpointSlices created through
# the API. Per size and proxy it reports the initial full sync (the proxy's own metric and wall
# time to rules in place), the network-programming latency of one endpoint change, the rule count
# and the peak RSS. The cluster is brought up without a proxy or pod network, and torn down on
# exit (also on failure or Ctrl-C). Needs root; holds the machine's local-cluster lock throughout.
#
# Usage: hack/bench-vs-kube-proxy.sh [--sizes 1000,5000,10000] [--endpoints 5]
#            [--proxies kube-proxy-iptables,kube-proxy-nftables,switchyard-iptables]
#            [--out DIR] [--changes 5] [--timeout 1800s] [--cleanup-timeout 600s]
# --timeout bounds each proxy's first sync and each change (a miss is reported as a timeout, never
# as a figure); --cleanup-timeout bounds each proxy's own --cleanup run, after which the bench
# deletes the node's tables itself and says so.
# Exit status: 0 when every run gave figures or timed out (a timeout is a result), 1 otherwise.
# Output: tables on stdout; DIR (default /tmp/bench-vs-kube-proxy-<time>) gets results.md,
#         results.json, results.csv, machine.txt, proxy logs (logs/) and the cluster's logs.
set -euo pipefail

SY_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
sizes=1000,5000,10000
endpoints=5
proxies=kube-proxy-iptables,kube-proxy-nftables,switchyard-iptables
out="/tmp/bench-vs-kube-proxy-$(date -u +%Y%m%dT%H%M%SZ)"
changes=5
timeout=1800s
cleanup_timeout=600s
while (($#)); do
	case "$1" in
	--sizes) sizes="$2"; shift 2 ;;
	--endpoints) endpoints="$2"; shift 2 ;;
	--proxies) proxies="$2"; shift 2 ;;
	--out) out="$2"; shift 2 ;;
	--changes) changes="$2"; shift 2 ;;
	--timeout) timeout="$2"; shift 2 ;;
	--cleanup-timeout) cleanup_timeout="$2"; shift 2 ;;
	-h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
	*) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
done

# One node, no proxy and no pod network: the bench starts each proxy itself.
export SWITCHYARD_NODES=1 SWITCHYARD_POD_NETWORK=none SWITCHYARD_PROXY_MODE=iptables
SY_LOG_TAG=bench-vs-kube-proxy
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "${SY_REPO}/hack/lib/common.sh"

[[ "$(id -u)" == 0 ]] || sy_die "the local cluster creates network namespaces: run as root"
command -v go >/dev/null || sy_die "needs Go (hack/install-deps.sh installs it)"
sy_ensure_packages nft:nftables iptables-legacy-save:iptables
# Hold the cluster lock for the whole run (bring-up, bench, tear-down), so no e2e test or other
# bench uses or removes the cluster in between; the scripts below then skip taking it.
sy_lock
export SWITCHYARD_CLUSTER_LOCKED=1
[[ ! -e "${SY_STATE}/state.env" ]] ||
	sy_die "a local cluster is already up (${SY_STATE}/state.env); the bench needs its own: run hack/local-down.sh first"

mkdir -p "${out}"
out="$(cd "${out}" && pwd)"
tmp="$(mktemp -d /tmp/bench-vs-kube-proxy-bin.XXXXXX)"
cluster_up=0
finish() {
	local rc=$?
	if ((cluster_up)); then
		sy_log "tearing the cluster down (its logs go to ${out}/cluster-logs)"
		"${SY_REPO}/hack/local-down.sh" --keep-logs "${out}/cluster-logs" >&2 || rc=1
	fi
	rm -rf "${tmp}"
	exit "${rc}"
}
trap finish EXIT
trap 'exit 130' INT TERM

sy_log "building upstream kube-proxy ${SY_K8S_VERSION} (cached), switchyard and the driver from the tree"
k8s_bin="$("${SY_REPO}/hack/k8s/build.sh" | tail -n1)"
(cd "${SY_REPO}" && CGO_ENABLED=0 go build -o "${tmp}/switchyard" ./cmd/switchyard &&
	go build -o "${tmp}/driver" ./hack/bench-vs-kube-proxy)

{
	echo "date: $(date -u +%FT%TZ)"
	echo "cpus (nproc): $(nproc)"
	echo "cpu: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
	echo "memory: $(awk '/^MemTotal/ { printf "%.1f GB", $2 / 1048576 }' /proc/meminfo)"
	echo "kernel: $(uname -r)"
	echo "os: $(awk -F= '/^PRETTY_NAME=/ { gsub(/"/, "", $2); print $2 }' /etc/os-release)"
	echo "iptables: $(iptables --version)"
	echo "nft: $(nft --version)"
	echo "kube-proxy: $("${k8s_bin}/kube-proxy" --version 2>&1)"
	echo "switchyard: git $(git -C "${SY_REPO}" rev-parse --short HEAD)$(git -C "${SY_REPO}" diff --quiet HEAD -- cmd proxier watcher || echo ' (with uncommitted changes)')"
	echo "uptime before bring-up: $(uptime)"
} >"${out}/machine.txt"

sy_log "bringing up the one-node cluster (no proxy, no pod network)"
cluster_up=1
"${SY_REPO}/hack/local-up.sh" --nodes 1 --proxy none --pod-network none --echo-pods 0 >&2

sy_log "running the bench; results go to ${out}"
"${tmp}/driver" --kubeconfig="${SY_STATE}/admin.kubeconfig" \
	--node-kubeconfig="${SY_STATE}/nodes/sy-node-1/kubeconfig" --node=sy-node-1 \
	--cluster-cidr="${SY_CLUSTER_CIDR}" --kube-proxy="${k8s_bin}/kube-proxy" --switchyard="${tmp}/switchyard" \
	--sizes="${sizes}" --endpoints="${endpoints}" --proxies="${proxies}" --changes="${changes}" \
	--timeout="${timeout}" --cleanup-timeout="${cleanup_timeout}" --out="${out}" --facts="${out}/machine.txt"
sy_log "done: ${out}/results.md"
