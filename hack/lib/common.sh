# shellcheck shell=bash disable=SC2034 # the layout variables are used by the scripts that source this
# Shared helpers for the local cluster scripts (hack/local-up.sh, hack/local-down.sh).
# Source it; it defines functions and the cluster's layout, and changes no shell options.
#
# Everything the cluster makes is recorded under ${SY_STATE} so that local-down.sh can remove
# exactly that, even after an up that failed half way.

# Layout. Change these only together with the e2e harness (e2e/framework/cluster), which reads state.env.
SY_STATE="${SWITCHYARD_STATE:-/tmp/switchyard-local}"
SY_NODES="${SWITCHYARD_NODES:-3}"
# The upstream release of the control plane and kube-proxy: the one K8S_VERSION line in
# hack/k8s/build.sh, which says how to pin another.
SY_K8S_VERSION="$(sed -n 's/^K8S_VERSION=//p' "$(dirname "${BASH_SOURCE[0]}")/../k8s/build.sh")"
SY_APISERVER_PORT=6443
SY_ETCD_CLIENT_PORT="${SWITCHYARD_ETCD_PORT:-2379}"
SY_ETCD_PEER_PORT=$((SY_ETCD_CLIENT_PORT + 1))
SY_SERVICE_CIDR=10.96.0.0/16
SY_SERVICE_APISERVER_IP=10.96.0.1
SY_CLUSTER_CIDR=10.244.0.0/16
SY_NODE_CIDR_MASK=24
SY_UNDERLAY_NS=sy-underlay
SY_UNDERLAY_BRIDGE=sy-br0
SY_UNDERLAY_PREFIX=192.168.50
SY_UNDERLAY_GW="${SY_UNDERLAY_PREFIX}.1" # the bridge's own address; also the advertised API address
SY_PROXY_MODE="${SWITCHYARD_PROXY_MODE:-iptables}"
SY_POD_NETWORK="${SWITCHYARD_POD_NETWORK:-vxlan}" # switchyard's --pod-network: vxlan or none

sy_log() { printf '[%s %s] %s\n' "${SY_LOG_TAG:-local-up}" "$(date -u +%H:%M:%S)" "$*" >&2; }
sy_die() {
	sy_log "ERROR: $*"
	exit 1
}

# sy_lock waits for, then holds for the rest of the script, the machine's cluster lock: the same
# flock the e2e harness (e2e/framework/cluster/lock.go) holds while a test process uses the cluster, so a
# hand-run local-down.sh never pulls the cluster from under a running test. The harness sets
# SWITCHYARD_CLUSTER_LOCKED=1 for the scripts it runs, as it already holds the lock. Processes the
# scripts start do not inherit the lock's descriptor (see sy_start).
sy_lock() {
	[[ "${SWITCHYARD_CLUSTER_LOCKED:-0}" == 1 ]] && return 0
	exec 9>>"${SY_STATE}.lock"
	if ! flock -n 9; then
		sy_log "waiting for another process using the local cluster (${SY_STATE}.lock)"
		flock 9
	fi
}

sy_node_name() { echo "sy-node-$1"; }
sy_node_ip() { echo "${SY_UNDERLAY_PREFIX}.$((10 + $1))"; }

# sy_record KIND VALUE appends to the list local-down.sh walks. Recording happens before the
# thing is created, so a crash between the two leaves at worst a harmless stale entry.
sy_record() {
	mkdir -p "${SY_STATE}"
	local file="${SY_STATE}/$1.list"
	grep -qxF -- "$2" "${file}" 2>/dev/null || echo "$2" >>"${file}"
}

sy_netns_exists() { [[ -e "/run/netns/$1" ]]; }

# sy_netns_add NAME creates a recorded namespace with loopback up; a no-op when it exists.
sy_netns_add() {
	sy_record netns "$1"
	if ! sy_netns_exists "$1"; then
		ip netns add "$1"
	fi
	ip -n "$1" link set lo up
}

# sy_pid_alive NAME is true when the process recorded as NAME runs and is still the one we
# started (its command line still holds the recorded marker), so a recycled pid is never mistaken
# for ours.
sy_pid_alive() {
	local pidfile="${SY_STATE}/pids/$1.pid"
	[[ -s "${pidfile}" ]] || return 1
	local pid
	pid="$(<"${pidfile}")"
	local args
	args="$(tr '\0' ' ' <"/proc/${pid}/cmdline" 2>/dev/null)" || return 1
	# A string match, not `| grep -q`: grep's early exit would fail the pipeline under pipefail.
	[[ "${args}" == *"$(<"${SY_STATE}/pids/$1.marker")"* ]]
}

# sy_start NAME MARKER CMD... starts CMD in the background, detached from this shell (setsid) so it
# outlives local-up.sh, logging to ${SY_STATE}/logs/NAME.log. MARKER is a string of CMD's command
# line that identifies it for sy_pid_alive and local-down.sh. A running NAME is left alone.
sy_start() {
	local name="$1" marker="$2"
	shift 2
	mkdir -p "${SY_STATE}/pids" "${SY_STATE}/logs"
	if sy_pid_alive "${name}"; then
		sy_log "${name} already running (pid $(<"${SY_STATE}/pids/${name}.pid"))"
		return 0
	fi
	printf '%s' "${marker}" >"${SY_STATE}/pids/${name}.marker"
	printf '=== %s started by local-up: %s\n' "$(date -u +%FT%TZ)" "$*" >>"${SY_STATE}/logs/${name}.log"
	setsid "$@" </dev/null >>"${SY_STATE}/logs/${name}.log" 2>&1 9>&- &
	echo $! >"${SY_STATE}/pids/${name}.pid"
}

# sy_pid_running PID is true while PID exists and is not a zombie: what we start is reparented
# once local-up.sh exits, and its new parent may reap it late.
sy_pid_running() {
	local stat
	stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
	stat="${stat##*) }"
	[[ "${stat%% *}" != Z ]]
}

# sy_stop NAME terminates a recorded process (TERM, then KILL after 5 s) and forgets it.
sy_stop() {
	local name="$1" pidfile="${SY_STATE}/pids/$1.pid"
	if sy_pid_alive "${name}"; then
		local pid i
		pid="$(<"${pidfile}")"
		# sy_start made it a process group leader (setsid); signalling the group also ends
		# the children it forked, such as socat's per-connection copies.
		kill -TERM -- "-${pid}" 2>/dev/null || kill -TERM "${pid}" 2>/dev/null || true
		for ((i = 0; i < 50; i++)); do
			sy_pid_running "${pid}" || break
			sleep 0.1
		done
		kill -KILL -- "-${pid}" 2>/dev/null || true
	fi
	rm -f "${pidfile}" "${SY_STATE}/pids/${name}.marker"
}

# sy_wait_for DESC TIMEOUT_S CMD... polls CMD every 0.1 s until it succeeds.
sy_wait_for() {
	local desc="$1" timeout="$2"
	shift 2
	local deadline=$((SECONDS + timeout))
	until "$@" >/dev/null 2>&1; do
		if ((SECONDS >= deadline)); then
			sy_log "timed out after ${timeout}s waiting for ${desc}"
			return 1
		fi
		sleep 0.1
	done
}

# sy_ensure_packages installs the Debian packages that provide the given commands when missing.
# Arguments are command:package pairs.
sy_ensure_packages() {
	local pair missing=()
	for pair in "$@"; do
		command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
	done
	((${#missing[@]})) || return 0
	sy_log "installing Debian packages: ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}
