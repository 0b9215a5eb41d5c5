# shellcheck shell=bash
# Pods of the local cluster: a network namespace wired by the real switchyard-cni plugin, running
# the echo server, plus a Pod object whose status is patched the way a kubelet would (podIP and
# Ready), so the real EndpointSlice controller publishes it. Source after proxy.sh.
#
# The CNI plugin runs inside the node's namespace, as a kubelet on that node would run it. Its
# network configuration is the first *.conf or *.conflist in the node's CNI directory
# (${SY_STATE}/nodes/<node>/cni/net.d, where the node's switchyard may write it), else a minimal
# one naming the plugin.

sy_pod_netns() { echo "sy-pod-$1-$2"; }

# sy_cni_conf NODE prints the single-plugin network configuration to give the plugin on NODE: the
# one the node's switchyard wrote, else the same paths written here (never the plugin's defaults,
# which every node would share).
sy_cni_conf() {
	local dir="${SY_STATE}/nodes/$1" f
	for f in "${dir}"/cni/net.d/*.conf "${dir}"/cni/net.d/*.conflist; do
		[[ -s "${f}" ]] || continue
		# A list holds the plugin under .plugins; the runtime hands it name and cniVersion.
		jq -c 'if .plugins then (.plugins[0] + {name, cniVersion}) else . end' "${f}"
		return 0
	done
	jq -nc --arg subnet "${dir}/subnet.env" --arg data "${dir}/cni/data" \
		'{cniVersion: "1.0.0", name: "switchyard", type: "switchyard-cni", subnetFile: $subnet, dataDir: $data}'
}

# sy_cni NODE COMMAND POD_NS POD_NAME runs the plugin; prints its result on stdout.
sy_cni() {
	local node="$1" cmd="$2" ns="$3" name="$4" netns
	netns="$(sy_pod_netns "${ns}" "${name}")"
	sy_cni_conf "${node}" | ip netns exec "${node}" env \
		CNI_COMMAND="${cmd}" CNI_CONTAINERID="${ns}_${name}" CNI_NETNS="/run/netns/${netns}" \
		CNI_IFNAME=eth0 CNI_PATH="${SY_STATE}/bin" \
		CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=${ns};K8S_POD_NAME=${name}" \
		"${SY_STATE}/bin/switchyard-cni"
}

# sy_pod_object NODE NS NAME LABELS_JSON creates the Pod object bound to NODE.
sy_pod_object() {
	local node="$1" ns="$2" name="$3" labels="$4"
	sy_apply /api/v1/namespaces '{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "'"${ns}"'"}}'
	sy_apply "/api/v1/namespaces/${ns}/pods" "$(jq -nc --arg n "${name}" --arg node "${node}" \
		--argjson labels "${labels}" '{apiVersion: "v1", kind: "Pod",
		metadata: {name: $n, labels: $labels},
		spec: {nodeName: $node, terminationGracePeriodSeconds: 0,
		  containers: [{name: "echo", image: "switchyard.local/echoserver",
		    ports: [{name: "http", containerPort: 8080, protocol: "TCP"},
		            {name: "udp", containerPort: 8080, protocol: "UDP"}]}]}}')"
}

# sy_pod_set_ready NS NAME IP HOST_IP READY patches the status a kubelet would write.
sy_pod_set_ready() {
	local ns="$1" name="$2" ip="$3" host_ip="$4" ready="$5" now
	now="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
	sy_api PATCH "/api/v1/namespaces/${ns}/pods/${name}/status" "$(jq -nc --arg ip "${ip}" \
		--arg host "${host_ip}" --arg r "${ready}" --arg now "${now}" '{status: {
		phase: "Running", podIP: $ip, podIPs: [{ip: $ip}], hostIP: $host, hostIPs: [{ip: $host}],
		startTime: $now,
		conditions: [
		  {type: "PodScheduled", status: "True", lastTransitionTime: $now},
		  {type: "Initialized", status: "True", lastTransitionTime: $now},
		  {type: "ContainersReady", status: $r, lastTransitionTime: $now},
		  {type: "Ready", status: $r, lastTransitionTime: $now}]}}')" \
		application/strategic-merge-patch+json >/dev/null
}

# sy_pod_add I NS NAME LABELS_JSON starts a pod on node I. It returns 3 (and says why) when
# switchyard-cni is not available yet, so callers can skip pods cleanly.
sy_pod_add() {
	local i="$1" ns="$2" name="$3" labels="${4:-}" node netns
	[[ -n "${labels}" ]] || labels='{}'
	node="$(sy_node_name "${i}")"
	netns="$(sy_pod_netns "${ns}" "${name}")"
	if [[ ! -x "${SY_STATE}/bin/switchyard-cni" ]] && ! sy_build_switchyard switchyard-cni >/dev/null; then
		sy_log "SKIPPED: pod ${ns}/${name} (no working cmd/switchyard-cni yet)"
		return 3
	fi
	if [[ ! -x "${SY_STATE}/bin/echoserver" ]]; then
		if [[ -x "${SWITCHYARD_BIN_DIR:-/nonexistent}/echoserver" ]]; then
			cp "${SWITCHYARD_BIN_DIR}/echoserver" "${SY_STATE}/bin/echoserver"
		else
			(cd "${SY_REPO}" && CGO_ENABLED=0 go build -o "${SY_STATE}/bin/echoserver" ./e2e/framework/echoserver) ||
				sy_die "cannot build e2e/framework/echoserver"
		fi
	fi
	# The node's switchyard writes the subnet file once it knows the node's pod CIDR.
	sy_wait_for "${node}'s subnet file (written by its switchyard)" 60 test -s "${SY_STATE}/nodes/${node}/subnet.env" ||
		return 1
	sy_record pods "${i} ${ns} ${name}"
	sy_netns_add "${netns}"
	local result ip
	if ! ip -n "${netns}" link show eth0 >/dev/null 2>&1; then
		result="$(sy_cni "${node}" ADD "${ns}" "${name}")" || {
			sy_log "switchyard-cni ADD failed for ${ns}/${name} on ${node}: ${result}"
			return 1
		}
		printf '%s\n' "${result}" >"${SY_STATE}/nodes/${node}/cni-result-${ns}-${name}.json"
	fi
	ip="$(jq -r '.ips[0].address // empty' "${SY_STATE}/nodes/${node}/cni-result-${ns}-${name}.json")"
	ip="${ip%/*}"
	[[ -n "${ip}" ]] || {
		sy_log "switchyard-cni gave ${ns}/${name} no IP"
		return 1
	}
	sy_start "pod-${ns}-${name}" "--pod=${ns}/${name}" ip netns exec "${netns}" \
		"${SY_STATE}/bin/echoserver" "--pod=${ns}/${name}"
	sy_pod_object "${node}" "${ns}" "${name}" "${labels}"
	sy_pod_set_ready "${ns}" "${name}" "${ip}" "$(sy_node_ip "${i}")" True
	sy_log "pod ${ns}/${name} on ${node}: ${ip}"
}

# sy_pod_del I NS NAME removes the Pod object at once (no kubelet would confirm a graceful
# deletion), stops its server, releases its address through the plugin and deletes its namespace.
sy_pod_del() {
	local i="$1" ns="$2" name="$3" node netns
	node="$(sy_node_name "${i}")"
	netns="$(sy_pod_netns "${ns}" "${name}")"
	sy_api DELETE "/api/v1/namespaces/${ns}/pods/${name}?gracePeriodSeconds=0" >/dev/null 2>&1 || true
	sy_stop "pod-${ns}-${name}"
	if [[ -x "${SY_STATE}/bin/switchyard-cni" ]] && sy_netns_exists "${netns}"; then
		sy_cni "${node}" DEL "${ns}" "${name}" >/dev/null ||
			sy_log "switchyard-cni DEL failed for ${ns}/${name}; deleting its namespace anyway"
	fi
	ip netns del "${netns}" 2>/dev/null || true
	rm -f "${SY_STATE}/nodes/${node}/cni-result-${ns}-${name}.json"
}
