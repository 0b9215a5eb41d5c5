#!/usr/bin/env bash
# Adds or removes one echo pod on a node of the running local cluster (hack/local-up.sh).
#
# Usage: hack/local-pod.sh add NODE_INDEX NAMESPACE NAME [LABELS_JSON]   e.g. add 2 default web-1 '{"app":"web"}'
#        hack/local-pod.sh del NODE_INDEX NAMESPACE NAME
# add prints the pod IP on stdout; it exits 3 when switchyard-cni is not available yet.
set -euo pipefail

SY_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SY_LOG_TAG=local-pod
# shellcheck source=lib/cluster.sh
source "${SY_REPO}/hack/lib/cluster.sh"

[[ -s "${SY_STATE}/state.env" ]] || sy_die "no local cluster in ${SY_STATE}: run hack/local-up.sh"
sy_lock
# shellcheck disable=SC1091
source "${SY_STATE}/state.env"
(($# >= 4)) || sy_die "usage: $0 add|del NODE_INDEX NAMESPACE NAME [LABELS_JSON]"
cmd="$1" idx="$2" ns="$3" name="$4"
if ! [[ "${idx}" =~ ^[0-9]+$ ]] || ((idx < 1 || idx > SY_NODES)); then
	sy_die "node index must be 1..${SY_NODES}"
fi
case "${cmd}" in
add)
	sy_pod_add "${idx}" "${ns}" "${name}" "${5:-}"
	ip="$(jq -r '.ips[0].address' "${SY_STATE}/nodes/$(sy_node_name "${idx}")/cni-result-${ns}-${name}.json")"
	echo "${ip%/*}"
	;;
del) sy_pod_del "${idx}" "${ns}" "${name}" ;;
*) sy_die "unknown command ${cmd}: want add or del" ;;
esac
