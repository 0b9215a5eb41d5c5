# shellcheck shell=bash
# The local control plane: etcd, kube-apiserver and kube-controller-manager, all on 127.0.0.1.
# Source after common.sh and certs.sh; needs SY_K8S_BIN (from hack/k8s/build.sh).

# Controllers that matter for a proxy: EndpointSlices for Services (and mirroring for Services
# without selectors), pod CIDRs for the VXLAN network, namespace cleanup, and the garbage collector
# that deletes a Service's EndpointSlices through their owner references.
SY_CONTROLLERS="endpointslice-controller,endpointslice-mirroring-controller,node-ipam-controller"
SY_CONTROLLERS+=",namespace-controller,garbage-collector-controller"

# sy_api METHOD PATH [BODY [CONTENT-TYPE]] calls the API server as cluster admin and prints the body.
# It fails on any HTTP status >= 400 and prints the server's message on stderr.
sy_api() {
	local method="$1" path="$2" body="${3:-}" ctype="${4:-application/json}"
	local args=(-sS --fail-with-body --max-time 10 -X "${method}"
		--cacert "${SY_PKI}/ca.crt" --cert "${SY_PKI}/admin.crt" --key "${SY_PKI}/admin.key")
	[[ -n "${body}" ]] && args+=(-H "Content-Type: ${ctype}" --data-binary "${body}")
	curl "${args[@]}" "https://127.0.0.1:${SY_APISERVER_PORT}${path}"
}

# sy_apply PATH BODY creates an object at the collection PATH; an existing one is left as it is.
sy_apply() {
	local out
	if out="$(sy_api POST "$1" "$2" 2>&1)"; then
		return 0
	fi
	grep -q '"reason": *"AlreadyExists"' <<<"${out}" && return 0
	sy_log "POST $1 failed: ${out}"
	return 1
}

sy_start_etcd() {
	mkdir -p "${SY_STATE}/etcd"
	chmod 700 "${SY_STATE}/etcd"
	local url="http://127.0.0.1:${SY_ETCD_CLIENT_PORT}" peer="http://127.0.0.1:${SY_ETCD_PEER_PORT}"
	# Debian's etcd is 3.4: it warns about its own package build, which is harmless. The
	# quota and snapshot settings keep a 10k-service bench from hitting the 2 GB default.
	sy_start etcd "${SY_STATE}/etcd/data" etcd --name switchyard-local \
		--data-dir "${SY_STATE}/etcd/data" \
		--listen-client-urls "${url}" --advertise-client-urls "${url}" \
		--listen-peer-urls "${peer}" --initial-advertise-peer-urls "${peer}" \
		--initial-cluster "switchyard-local=${peer}" \
		--quota-backend-bytes 8589934592 --snapshot-count 50000 --log-level warn
	sy_wait_for "etcd on ${url}" 30 curl -sf "${url}/health" ||
		sy_die "etcd did not become healthy; see ${SY_STATE}/logs/etcd.log"
}

sy_start_apiserver() {
	sy_start kube-apiserver "${SY_PKI}/apiserver.crt" "${SY_K8S_BIN}/kube-apiserver" \
		--bind-address 127.0.0.1 --secure-port "${SY_APISERVER_PORT}" \
		--advertise-address "${SY_UNDERLAY_GW}" \
		--etcd-servers "http://127.0.0.1:${SY_ETCD_CLIENT_PORT}" \
		--tls-cert-file "${SY_PKI}/apiserver.crt" --tls-private-key-file "${SY_PKI}/apiserver.key" \
		--client-ca-file "${SY_PKI}/ca.crt" \
		--service-account-issuer https://kubernetes.default.svc.cluster.local \
		--service-account-key-file "${SY_PKI}/sa.pub" \
		--service-account-signing-key-file "${SY_PKI}/sa.key" \
		--service-cluster-ip-range "${SY_SERVICE_CIDR}" \
		--service-node-port-range 30000-32767 \
		--authorization-mode RBAC \
		--disable-admission-plugins TaintNodesByCondition,ServiceAccount \
		--cert-dir "${SY_PKI}/apiserver-generated" \
		--profiling=false --v "${SWITCHYARD_K8S_V:-1}"
	# No kubelet runs: TaintNodesByCondition would taint every new Node not-ready forever, and
	# ServiceAccount admission would make Pod creation race the default account's creation.
	sy_wait_for "kube-apiserver /readyz" 60 curl -sf --cacert "${SY_PKI}/ca.crt" \
		"https://127.0.0.1:${SY_APISERVER_PORT}/readyz" ||
		sy_die "kube-apiserver did not become ready; see ${SY_STATE}/logs/kube-apiserver.log"
}

sy_start_controller_manager() {
	sy_start kube-controller-manager "${SY_STATE}/controller-manager.kubeconfig" \
		"${SY_K8S_BIN}/kube-controller-manager" \
		--kubeconfig "${SY_STATE}/controller-manager.kubeconfig" \
		--bind-address 127.0.0.1 --secure-port 10257 \
		--leader-elect=false \
		--controllers "${SY_CONTROLLERS}" \
		--allocate-node-cidrs --cluster-cidr "${SY_CLUSTER_CIDR}" \
		--node-cidr-mask-size "${SY_NODE_CIDR_MASK}" \
		--service-cluster-ip-range "${SY_SERVICE_CIDR}" \
		--concurrent-service-endpoint-syncs 10 \
		--profiling=false --v "${SWITCHYARD_K8S_V:-1}"
	sy_wait_for "kube-controller-manager /healthz" 60 curl -skf "https://127.0.0.1:10257/healthz" ||
		sy_die "kube-controller-manager did not become healthy; see ${SY_STATE}/logs/kube-controller-manager.log"
}

# sy_bootstrap_rbac gives kube-controller-manager's own identity the bootstrap roles of exactly the
# controllers it runs (upstream gives each controller a service account of its own with
# --use-service-account-credentials; one identity with the same roles needs no token machinery).
# It also lets the nodes' identity (group switchyard:nodes) do what kube-proxy may do
# (system:node-proxier) plus what the VXLAN network needs: read Nodes and write its own
# annotations, as flannel's kube subnet manager does.
sy_bootstrap_rbac() {
	local role
	for role in node-controller endpointslice-controller endpointslicemirroring-controller \
		namespace-controller generic-garbage-collector; do
		sy_apply /apis/rbac.authorization.k8s.io/v1/clusterrolebindings '{
		  "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
		  "metadata": {"name": "switchyard-local:kcm:'"${role}"'"},
		  "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:controller:'"${role}"'"},
		  "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "system:kube-controller-manager"}]}'
	done
	sy_apply /apis/rbac.authorization.k8s.io/v1/clusterroles '{
	  "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
	  "metadata": {"name": "switchyard:node"},
	  "rules": [
	    {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch", "patch", "update"]},
	    {"apiGroups": [""], "resources": ["nodes/status"], "verbs": ["get", "patch", "update"]},
	    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
	    {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch", "update"]}
	  ]}'
	for role in system:node-proxier switchyard:node; do
		sy_apply /apis/rbac.authorization.k8s.io/v1/clusterrolebindings '{
		  "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
		  "metadata": {"name": "switchyard-nodes:'"${role#*:}"'"},
		  "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "'"${role}"'"},
		  "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "switchyard:nodes"}]}'
	done
}

# sy_start_root_relay listens on a unix socket in the state dir and forwards to the API server.
# Unix sockets are reached by path, not through a network namespace, so every node's own relay
# can connect to it while nothing in the root namespace listens beyond loopback.
sy_start_root_relay() {
	local sock="${SY_STATE}/apiserver.sock"
	sy_pid_alive relay-root || rm -f "${sock}"
	sy_start relay-root "UNIX-LISTEN:${sock}" socat \
		"UNIX-LISTEN:${sock},fork,mode=600" "TCP:127.0.0.1:${SY_APISERVER_PORT}"
	sy_wait_for "the API relay socket" 10 test -S "${sock}" ||
		sy_die "socat relay did not start; see ${SY_STATE}/logs/relay-root.log"
}

sy_controlplane_up() {
	sy_make_pki
	sy_start_etcd
	local t0
	t0="$(date +%s%N)"
	sy_start_apiserver
	sy_log "kube-apiserver ready after $((($(date +%s%N) - t0) / 1000000)) ms on https://127.0.0.1:${SY_APISERVER_PORT}"
	sy_bootstrap_rbac
	sy_start_controller_manager
	sy_start_root_relay
}
