#!/usr/bin/bash
# Runs inside the VM (hack/vm/selftest.sh puts it there). Checks that the kernel features and tools
# an IPVS-mode proxy needs are present, each inside a throwaway namespace, and exits non-zero on the
# first missing one. Every check prints one "ok" or "FAIL" line.
set -uo pipefail

FAILED=0
check() {
	local what="$1"
	shift
	local out
	if out="$("$@" 2>&1)"; then
		echo "ok   $what"
	else
		echo "FAIL $what"
		printf '%s\n' "$out" | sed 's/^/     /'
		FAILED=1
	fi
}

NS=sy-selftest
# shellcheck disable=SC2317 # used through check "$@"
nsx() { ip netns exec "$NS" "$@"; }

check "ip netns add" ip netns add "$NS"
check "loopback up in the namespace" nsx ip link set lo up
check "/proc/net/ip_vs exists (ip_vs loaded)" test -e /proc/net/ip_vs
check "/proc/net/ip_vs exists inside the namespace" nsx test -e /proc/net/ip_vs
# shellcheck disable=SC2016 # expanded by the inner bash
check "ip_vs and all its schedulers are loaded" bash -c '
	for s in rr wrr lc wlc lblc lblcr dh sh sed nq fo ovf mh; do
		grep -q "^ip_vs_$s " /proc/modules || { echo "ip_vs_$s not loaded"; exit 1; }
	done'
check "net.ipv4.vs sysctls exist in the namespace" nsx test -e /proc/sys/net/ipv4/vs/conntrack
check "dummy device (kube-ipvs0)" bash -c "
	ip -n $NS link add kube-ipvs0 type dummy &&
	ip -n $NS addr add 10.96.0.10/32 dev kube-ipvs0 &&
	ip -n $NS -o addr show dev kube-ipvs0 | grep -q 10.96.0.10"
check "veth pair" ip -n "$NS" link add sy-a type veth peer name sy-b
check "bridge" ip -n "$NS" link add sy-br0 type bridge
check "vxlan" ip -n "$NS" link add flannel.1 type vxlan id 1 dstport 8472 nolearning

# The rule shapes an IPVS-mode kube-proxy writes: every match and target it uses.
# shellcheck disable=SC2317 # called by the inner bash through export -f
rules() {
	local variant="$1"
	cat <<-RULES
	*nat
	:KUBE-SERVICES - [0:0]
	:KUBE-POSTROUTING - [0:0]
	:KUBE-MARK-MASQ - [0:0]
	:KUBE-NODE-PORT - [0:0]
	-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
	-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
	-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
	-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
	-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
	-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
	-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
	-A KUBE-SERVICES -m comment --comment "Kubernetes service cluster ip + port for masquerade purpose" -m set --match-set KUBE-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ
	-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT
	-A KUBE-SERVICES -m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT
	-A KUBE-NODE-PORT -p tcp -m multiport --dports 30000:30010,30080 -j KUBE-MARK-MASQ
	-A KUBE-NODE-PORT -m statistic --mode random --probability 0.5 -m recent --name sy-$variant --set -j RETURN
	COMMIT
	*filter
	:KUBE-FORWARD - [0:0]
	-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
	-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
	-A KUBE-FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
	-A KUBE-FORWARD -p tcp -d 10.96.0.99 --dport 80 -j REJECT --reject-with icmp-port-unreachable
	COMMIT
	RULES
}
export -f rules

check "ipset resolves protocol names (needs /etc/protocols)" bash -c "
	ip netns exec $NS ipset create KUBE-CLUSTER-IP hash:ip,port &&
	ip netns exec $NS ipset add KUBE-CLUSTER-IP 10.96.0.10,tcp:80 &&
	ip netns exec $NS ipset test KUBE-CLUSTER-IP 10.96.0.10,tcp:80 &&
	ip netns exec $NS ipset create KUBE-NODE-PORT-TCP bitmap:port range 0-65535 &&
	ip netns exec $NS ipset create KUBE-LOOP-BACK hash:ip,port,ip &&
	ip netns exec $NS ipset create KUBE-LOAD-BALANCER-SOURCE-CIDR hash:ip,port,net &&
	ip netns exec $NS ipset list -n | grep -q KUBE-CLUSTER-IP"
for variant in nft legacy; do
	check "iptables-$variant-restore loads kube-proxy's IPVS-mode rules" bash -c "
		rules $variant | ip netns exec $NS iptables-$variant-restore --noflush"
	check "iptables-$variant-save shows them back" bash -c "
		ip netns exec $NS iptables-$variant-save -t nat | grep -q -- '--match-set KUBE-CLUSTER-IP dst,dst' &&
		ip netns exec $NS iptables-$variant-save -t filter | grep -q -- '--ctstate INVALID'"
	check "iptables-$variant appends and lists a rule" bash -c "
		ip netns exec $NS iptables-$variant -t nat -A KUBE-SERVICES -d 10.96.0.11/32 -p udp --dport 53 -j RETURN &&
		ip netns exec $NS iptables-$variant -t nat -S KUBE-SERVICES | grep -q 10.96.0.11"
	check "ip6tables-$variant lists the nat table" ip netns exec "$NS" "ip6tables-$variant" -t nat -S
done
check "conntrack lists and flushes in the namespace" bash -c "
	ip netns exec $NS conntrack -L && ip netns exec $NS conntrack -F"

check "ip netns del" ip netns del "$NS"
exit "$FAILED"
