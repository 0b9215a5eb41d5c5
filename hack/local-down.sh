#!/usr/bin/env bash
# Removes everything hack/local-up.sh made: its processes, network namespaces and state directory
# (certificates, etcd data, logs). Works after a failed or partial up, and when nothing is up.
# The cached Kubernetes binaries (hack/k8s/build.sh) are kept.
#
# Usage: hack/local-down.sh [--keep-logs DIR]   (copies the logs to DIR first)
set -euo pipefail

SY_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
keep_logs=""
while (($#)); do
	case "$1" in
	--keep-logs) keep_logs="$2"; shift 2 ;;
	-h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
	*) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
done
SY_LOG_TAG=local-down
# shellcheck source=lib/common.sh
source "${SY_REPO}/hack/lib/common.sh"

[[ "$(id -u)" == 0 ]] || sy_die "run as root (it deletes network namespaces)"
sy_lock

if [[ -n "${keep_logs}" && -d "${SY_STATE}/logs" ]]; then
	mkdir -p "${keep_logs}"
	cp -r "${SY_STATE}/logs/." "${keep_logs}/"
	sy_log "logs copied to ${keep_logs}"
fi

# Our namespaces: the recorded ones (pods included) and the cluster's fixed names, in case the
# record was lost. Pods go first so nothing still refers to a node when it disappears.
namespaces=()
if [[ -s "${SY_STATE}/netns.list" ]]; then
	mapfile -t namespaces < <(grep -E '^sy-pod-' "${SY_STATE}/netns.list" || true)
fi
for ns in $(ip netns list | awk '{print $1}' | grep -E '^sy-node-[0-9]+$' || true) \
	$(grep -vE '^sy-pod-' "${SY_STATE}/netns.list" 2>/dev/null || true) "${SY_UNDERLAY_NS}"; do
	namespaces+=("${ns}")
done

# 1. Processes we started, newest kinds first: proxies and pods, then relays, then the control plane.
if [[ -d "${SY_STATE}/pids" ]]; then
	for f in "${SY_STATE}"/pids/*.pid; do
		[[ -e "${f}" ]] || continue
		name="$(basename "${f}" .pid)"
		case "${name}" in kube-apiserver | kube-controller-manager | etcd | relay-root) continue ;; esac
		sy_stop "${name}"
	done
	for name in kube-controller-manager kube-apiserver etcd relay-root; do
		sy_stop "${name}"
	done
fi

# 1b. Processes of ours whose pid files are gone (a state directory removed by hand): the programs
# local-up.sh starts, each naming a file under ${SY_STATE}/ on its command line.
for cmdline in /proc/[0-9]*/cmdline; do
	pid="${cmdline#/proc/}"
	pid="${pid%/cmdline}"
	# 2> comes before <, so that a process that exited since the glob leaves no error message.
	args="$(tr '\0' ' ' 2>/dev/null <"${cmdline}")" || continue
	prog="${args%% *}"
	case "${prog##*/}" in
	etcd | kube-apiserver | kube-controller-manager | kube-proxy | socat | switchyard | echoserver) ;;
	*) continue ;;
	esac
	if [[ "${args}" == *"${SY_STATE}/"* ]]; then
		sy_log "stopping leftover process ${pid}: ${args:0:100}"
		kill -KILL "${pid}" 2>/dev/null || true
	fi
done

# 2. Anything still running inside our namespaces (children of what we started); a namespace
# cannot vanish while a process holds it.
for ns in "${namespaces[@]}"; do
	sy_netns_exists "${ns}" || continue
	pids="$(ip netns pids "${ns}" 2>/dev/null || true)"
	if [[ -n "${pids}" ]]; then
		sy_log "killing leftover processes in ${ns}: ${pids//$'\n'/ }"
		# shellcheck disable=SC2086
		kill -KILL ${pids} 2>/dev/null || true
	fi
done

# 3. The namespaces; every device, address, route and rule inside goes with them.
deleted=0
for ns in "${namespaces[@]}"; do
	if sy_netns_exists "${ns}"; then
		ip netns del "${ns}" && deleted=$((deleted + 1))
	fi
done
sy_log "deleted ${deleted} network namespaces"

# 4. The state: certificates, etcd data, kubeconfigs, logs.
if [[ -d "${SY_STATE}" ]]; then
	rm -rf "${SY_STATE}"
	sy_log "removed ${SY_STATE}"
fi

left=""
for ns in "${namespaces[@]}"; do
	sy_netns_exists "${ns}" && left+=" ${ns}"
done
if [[ -n "${left}" ]]; then
	sy_die "namespaces still present: ${left}"
fi
sy_log "local cluster removed"
