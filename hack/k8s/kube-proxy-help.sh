#!/usr/bin/env bash
# Captures the --help of the upstream kube-proxy that hack/k8s/build.sh builds (the release pinned
# there) into cmd/switchyard/testdata/kube-proxy-help.txt. TestKubeProxyHelpFlagsParse runs every
# flag listed in it through Switchyard's flag set, so that a kube-proxy DaemonSet's arguments keep
# working. Run it after moving the pin, and commit the file.
#
# Usage: hack/k8s/kube-proxy-help.sh
# Env:   KUBE_PROXY   use this kube-proxy binary instead of building one
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${HERE}/../../cmd/switchyard/testdata/kube-proxy-help.txt"

bin="${KUBE_PROXY:-}"
if [[ -z "${bin}" ]]; then
	bin="$("${HERE}/build.sh" kube-proxy | tail -n1)/kube-proxy"
fi
version="$("${bin}" --version)"
{
	echo "# ${version}: kube-proxy --help, captured by hack/k8s/kube-proxy-help.sh"
	"${bin}" --help
} >"${OUT}"
echo "wrote ${OUT} (${version})" >&2
