# shellcheck shell=bash
# Cluster nodes as network namespaces on an underlay. Source after controlplane.sh.
#
#   sy-underlay:  bridge sy-br0 192.168.50.1/24, one veth port per node, and an API relay on
#                 192.168.50.1:6443 (the address the API server advertises for the kubernetes
#                 Service, so that Service really works from nodes and pods).
#   sy-node-i:    eth0 192.168.50.(10+i)/24, default route via 192.168.50.1, an API relay on its own
#                 127.0.0.1:6443, and a Node object sy-node-i with that InternalIP.
# Nothing here touches the root network namespace: every ip command names its namespace.

sy_underlay_up() {
	sy_netns_add "${SY_UNDERLAY_NS}"
	local ns="${SY_UNDERLAY_NS}"
	if ! ip -n "${ns}" link show "${SY_UNDERLAY_BRIDGE}" >/dev/null 2>&1; then
		ip -n "${ns}" link add "${SY_UNDERLAY_BRIDGE}" type bridge
	fi
	ip -n "${ns}" addr replace "${SY_UNDERLAY_GW}/24" dev "${SY_UNDERLAY_BRIDGE}"
	ip -n "${ns}" link set "${SY_UNDERLAY_BRIDGE}" up
	sy_start relay-underlay "TCP-LISTEN:${SY_APISERVER_PORT},bind=${SY_UNDERLAY_GW}" \
		ip netns exec "${ns}" socat \
		"TCP-LISTEN:${SY_APISERVER_PORT},bind=${SY_UNDERLAY_GW},fork,reuseaddr" \
		"UNIX-CONNECT:${SY_STATE}/apiserver.sock"
}

# sy_node_net_up I wires node I into the underlay; safe to repeat.
sy_node_net_up() {
	local i="$1" node ip port
	node="$(sy_node_name "${i}")"
	ip="$(sy_node_ip "${i}")"
	port="veth-n${i}"
	sy_netns_add "${node}"
	if ! ip -n "${node}" link show eth0 >/dev/null 2>&1; then
		# Create the pair inside the underlay namespace and move one end into the node, so
		# that no device exists in the root namespace even for a moment.
		ip -n "${SY_UNDERLAY_NS}" link del "${port}" 2>/dev/null || true
		ip -n "${SY_UNDERLAY_NS}" link add "${port}" type veth peer name eth0 netns "${node}"
	fi
	ip -n "${SY_UNDERLAY_NS}" link set "${port}" master "${SY_UNDERLAY_BRIDGE}" up
	ip -n "${node}" addr replace "${ip}/24" dev eth0
	ip -n "${node}" link set eth0 up
	ip -n "${node}" route replace default via "${SY_UNDERLAY_GW}" dev eth0
	# A node forwards pod traffic; these are per-namespace settings.
	ip netns exec "${node}" sysctl -qw net.ipv4.ip_forward=1
	ip netns exec "${node}" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
	mkdir -p "${SY_STATE}/nodes/${node}"
	sy_start "relay-${node}" "UNIX-CONNECT:${SY_STATE}/apiserver.sock" \
		ip netns exec "${node}" socat \
		"TCP-LISTEN:${SY_APISERVER_PORT},bind=127.0.0.1,fork,reuseaddr" \
		"UNIX-CONNECT:${SY_STATE}/apiserver.sock"
}

# sy_node_register I creates Node sy-node-I and marks it Ready with its InternalIP. No kubelet
# runs, so nothing else would; with no node-lifecycle controller nothing flips it back.
sy_node_register() {
	local i="$1" node ip
	node="$(sy_node_name "${i}")"
	ip="$(sy_node_ip "${i}")"
	sy_apply /api/v1/nodes '{"apiVersion": "v1", "kind": "Node",
	  "metadata": {"name": "'"${node}"'", "labels": {"kubernetes.io/hostname": "'"${node}"'",
	    "kubernetes.io/os": "linux", "switchyard.dev/local-cluster": "true"}}}'
	local now
	now="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
	sy_api PATCH "/api/v1/nodes/${node}/status" '{"status": {
	  "addresses": [{"type": "InternalIP", "address": "'"${ip}"'"}, {"type": "Hostname", "address": "'"${node}"'"}],
	  "conditions": [{"type": "Ready", "status": "True", "reason": "SwitchyardLocalCluster",
	    "message": "node namespace of the local cluster (no kubelet)",
	    "lastHeartbeatTime": "'"${now}"'", "lastTransitionTime": "'"${now}"'"}]}}' \
		application/merge-patch+json >/dev/null
}

# sy_node_pod_cidr I prints the pod CIDR the nodeipam controller assigned to node I (empty if none).
sy_node_pod_cidr() {
	sy_api GET "/api/v1/nodes/$(sy_node_name "$1")" | jq -r '.spec.podCIDR // empty'
}

sy_node_has_pod_cidr() { [[ -n "$(sy_node_pod_cidr "$1")" ]]; }

sy_nodes_up() {
	sy_underlay_up
	local i
	for ((i = 1; i <= SY_NODES; i++)); do
		sy_node_net_up "${i}"
		sy_node_register "${i}"
	done
	local t0
	t0="$(date +%s%N)"
	for ((i = 1; i <= SY_NODES; i++)); do
		sy_wait_for "a pod CIDR on $(sy_node_name "${i}")" 30 sy_node_has_pod_cidr "${i}" ||
			sy_die "nodeipam assigned no pod CIDR; see ${SY_STATE}/logs/kube-controller-manager.log"
	done
	for ((i = 1; i <= SY_NODES; i++)); do
		sy_log "$(sy_node_name "${i}"): $(sy_node_ip "${i}"), pod CIDR $(sy_node_pod_cidr "${i}")"
	done
	sy_log "pod CIDRs assigned within $((($(date +%s%N) - t0) / 1000000)) ms of registration"
}
