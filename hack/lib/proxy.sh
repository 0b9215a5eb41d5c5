# shellcheck shell=bash
# The per-node proxy: Switchyard itself, or upstream kube-proxy for comparison. Source after
# nodes.sh. SY_REPO must point at the repository root.
#
# Both run inside the node namespace with the node's kubeconfig (its API relay on 127.0.0.1:6443)
# and the node's name, so each sees only its own node's rules and interfaces.

# sy_build_switchyard BINARY prints the path of a freshly built Switchyard binary (switchyard or
# switchyard-cni), or fails with a message when that command is not in the tree or does not build.
# SWITCHYARD_BIN_DIR overrides: binaries are then copied from that directory as they are (e.g.
# bin/ after `make build`). Either way the result lives in ${SY_STATE}/bin, where pods.sh finds it.
sy_build_switchyard() {
	local name="$1"
	if [[ -n "${SWITCHYARD_BIN_DIR:-}" ]]; then
		[[ -x "${SWITCHYARD_BIN_DIR}/${name}" ]] || {
			sy_log "no ${name} in SWITCHYARD_BIN_DIR=${SWITCHYARD_BIN_DIR}"
			return 1
		}
		mkdir -p "${SY_STATE}/bin"
		# Copy to a new name and rename: a running binary cannot be overwritten in place.
		cp "${SWITCHYARD_BIN_DIR}/${name}" "${SY_STATE}/bin/.${name}.tmp"
		mv -f "${SY_STATE}/bin/.${name}.tmp" "${SY_STATE}/bin/${name}"
		echo "${SY_STATE}/bin/${name}"
		return 0
	fi
	if ! ls "${SY_REPO}/cmd/${name}/"*.go >/dev/null 2>&1; then
		sy_log "cmd/${name} is not in the tree yet"
		return 1
	fi
	mkdir -p "${SY_STATE}/bin"
	local out
	if ! out="$(cd "${SY_REPO}" && CGO_ENABLED=0 go build -o "${SY_STATE}/bin/.${name}.tmp" "./cmd/${name}" 2>&1)"; then
		sy_log "cmd/${name} does not build yet:"
		printf '%s\n' "${out}" | head -20 >&2
		return 1
	fi
	mv -f "${SY_STATE}/bin/.${name}.tmp" "${SY_STATE}/bin/${name}"
	echo "${SY_STATE}/bin/${name}"
}

# sy_start_switchyard I BINARY starts Switchyard in node I. SWITCHYARD_EXTRA_ARGS adds flags.
sy_start_switchyard() {
	local i="$1" bin="$2" node
	node="$(sy_node_name "${i}")"
	local dir="${SY_STATE}/nodes/${node}"
	local args=(--kubeconfig="${dir}/kubeconfig" --hostname-override="${node}"
		--proxy-mode="${SY_PROXY_MODE}" --cluster-cidr="${SY_CLUSTER_CIDR}")
	# Nodes share one filesystem, so each node's pod-network files get a directory of its own
	# (a real node's defaults are /run/switchyard, /etc/cni/net.d, ...). The plugin binary is not
	# installed anywhere: pods.sh runs it from ${SY_STATE}/bin.
	if [[ "${SY_POD_NETWORK}" == vxlan ]]; then
		# Capture the help first: `--help | grep -q` would end the binary with SIGPIPE, and
		# pipefail would then report "no such flag".
		local help
		help="$("${bin}" --help 2>&1 || true)"
		[[ "${help}" == *--subnet-file* && "${help}" == *--cni-conf-dir* && "${help}" == *--cni-data-dir* ]] ||
			sy_die "this switchyard lacks --subnet-file/--cni-*-dir: its nodes would share /run and /etc files; use --pod-network none"
		mkdir -p "${dir}/cni/net.d" "${dir}/cni/data"
		args+=(--pod-network=vxlan --subnet-file="${dir}/subnet.env" --cni-conf-dir="${dir}/cni/net.d"
			--cni-data-dir="${dir}/cni/data" --cni-bin-dir=)
	fi
	# shellcheck disable=SC2086 # SWITCHYARD_EXTRA_ARGS is a list of flags by design.
	sy_start "switchyard-${node}" "--hostname-override=${node}" \
		ip netns exec "${node}" "${bin}" "${args[@]}" ${SWITCHYARD_EXTRA_ARGS:-}
}

# sy_start_kube_proxy I starts upstream kube-proxy in node I, at the release the control plane runs.
sy_start_kube_proxy() {
	local i="$1" node
	node="$(sy_node_name "${i}")"
	local dir="${SY_STATE}/nodes/${node}"
	# A node namespace may not raise nf_conntrack_max or the conntrack TCP timeouts (they belong
	# to the root namespace or need privileges it lacks), and kube-proxy exits when it cannot, so
	# those settings are left alone: 0 means "do not touch" for each of them.
	# shellcheck disable=SC2086
	sy_start "kube-proxy-${node}" "--hostname-override=${node}" \
		ip netns exec "${node}" "${SY_K8S_BIN}/kube-proxy" \
		--kubeconfig="${dir}/kubeconfig" --hostname-override="${node}" \
		--proxy-mode="${SY_PROXY_MODE}" --cluster-cidr="${SY_CLUSTER_CIDR}" \
		--conntrack-max-per-core=0 --conntrack-tcp-timeout-established=0 \
		--conntrack-tcp-timeout-close-wait=0 \
		--metrics-bind-address=127.0.0.1:10249 --healthz-bind-address=0.0.0.0:10256 \
		--v="${SWITCHYARD_K8S_V:-1}" ${KUBE_PROXY_EXTRA_ARGS:-}
}

# SY_POD_NETWORK_RUNNING is set to 1 once switchyard (which also runs the pod network) runs.
SY_POD_NETWORK_RUNNING=0

# sy_proxies_up PROXY starts PROXY (switchyard, kube-proxy or none) in every node. Switchyard is
# skipped with a message while its command is missing from the tree or does not build.
sy_proxies_up() {
	local proxy="$1" i bin
	# One proxy per node: stop the other kind first (its rules stay, as they would on a real node;
	# run it once with --cleanup to remove them).
	for ((i = 1; i <= SY_NODES; i++)); do
		[[ "${proxy}" == switchyard ]] || sy_stop "switchyard-$(sy_node_name "${i}")"
		[[ "${proxy}" == kube-proxy ]] || sy_stop "kube-proxy-$(sy_node_name "${i}")"
	done
	case "${proxy}" in
	none)
		sy_log "proxy: none requested; nodes run no proxy"
		return 0
		;;
	switchyard)
		if ! bin="$(sy_build_switchyard switchyard)"; then
			sy_log "SKIPPED: starting switchyard in the nodes (no working cmd/switchyard yet)"
			return 0
		fi
		for ((i = 1; i <= SY_NODES; i++)); do
			sy_start_switchyard "${i}" "${bin}"
		done
		if [[ "${SY_POD_NETWORK}" == vxlan ]]; then
			# shellcheck disable=SC2034 # read by local-up.sh
			SY_POD_NETWORK_RUNNING=1
		fi
		;;
	kube-proxy)
		for ((i = 1; i <= SY_NODES; i++)); do
			sy_start_kube_proxy "${i}"
		done
		;;
	*)
		sy_die "unknown proxy ${proxy}: want switchyard, kube-proxy or none"
		;;
	esac
	local deadline=$((SECONDS + 60)) node
	until sy_proxies_healthy; do
		# A proxy that exited will not become healthy: say why at once instead of waiting.
		for ((i = 1; i <= SY_NODES; i++)); do
			node="$(sy_node_name "${i}")"
			if ! sy_pid_alive "${proxy}-${node}"; then
				sy_log "${proxy} exited on ${node}; the end of ${SY_STATE}/logs/${proxy}-${node}.log:"
				tail -n 15 "${SY_STATE}/logs/${proxy}-${node}.log" >&2 || true
				sy_die "${proxy} failed to start"
			fi
		done
		((SECONDS < deadline)) ||
			sy_die "${proxy} not healthy on every node after 60s; see ${SY_STATE}/logs/${proxy}-sy-node-*.log"
		sleep 0.2
	done
	sy_log "${proxy} (${SY_PROXY_MODE} mode) healthy on ${SY_NODES} nodes"
}

# sy_proxies_healthy is true when every node answers kube-proxy's healthz (port 10256) with 200.
sy_proxies_healthy() {
	local i
	for ((i = 1; i <= SY_NODES; i++)); do
		ip netns exec "$(sy_node_name "${i}")" curl -sf --max-time 2 -o /dev/null \
			"http://127.0.0.1:10256/healthz" || return 1
	done
}
