#!/usr/bin/env bash
# The main job (`make demo`): brings up the 3-node local cluster, creates a ClusterIP, a UDP, a
# NodePort and an externalTrafficPolicy=Local service over echo pods spread on the nodes, sends
# requests from a pod and from the underlay, and prints which pod answered each one and which client
# address it saw, then the rule counts and how to switch --proxy-mode. It exits non-zero when a
# request fails or lands where the service's policy does not allow, so it is also a smoke test.
# The cluster is torn down on exit (also on failure or Ctrl-C) unless --keep. Needs root.
#
# Usage: hack/demo.sh [--keep] [--requests N]
# Env:   SWITCHYARD_STATE (default /tmp/switchyard-local), as for hack/local-up.sh.
set -euo pipefail

SY_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
case "${1:-}" in
-h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
esac
[[ "$(id -u)" == 0 ]] || { echo "demo: the local cluster creates network namespaces: run as root" >&2; exit 1; }
command -v go >/dev/null || { echo "demo: needs Go (hack/install-deps.sh installs it)" >&2; exit 1; }

tmp="$(mktemp -d /tmp/switchyard-demo.XXXXXX)"
trap 'rm -rf "${tmp}"' EXIT
echo "[demo $(date -u +%H:%M:%S)] building hack/demo" >&2
(cd "${SY_REPO}" && CGO_ENABLED=0 go build -o "${tmp}/demo" ./hack/demo)
# Not exec: the trap removes the binary after the demo (which also runs it inside the namespaces
# as its request probe) has torn the cluster down.
"${tmp}/demo" "$@"
