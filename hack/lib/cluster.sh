# shellcheck shell=bash
# Sources every library of the local cluster, in the order they build on each other, for the
# scripts that act on a cluster (local-up.sh, local-pod.sh). The caller sets SY_REPO first.

# shellcheck source=lib/common.sh
source "${SY_REPO}/hack/lib/common.sh"
# shellcheck source=lib/certs.sh
source "${SY_REPO}/hack/lib/certs.sh"
# shellcheck source=lib/controlplane.sh
source "${SY_REPO}/hack/lib/controlplane.sh"
# shellcheck source=lib/nodes.sh
source "${SY_REPO}/hack/lib/nodes.sh"
# shellcheck source=lib/proxy.sh
source "${SY_REPO}/hack/lib/proxy.sh"
# shellcheck source=lib/pods.sh
source "${SY_REPO}/hack/lib/pods.sh"
