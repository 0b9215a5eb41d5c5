#!/usr/bin/env bash
# The reference the iptables backend's cold start is compared with (docs/benchmarks.md): one
# `iptables-nft-restore --noflush` of a flat ruleset, N service chains each holding its E DNAT rules
# inline plus one dispatch rule per service in one chain, into the empty nat table of a throwaway
# network namespace, timed. Prints one line. Needs root; touches nothing outside its namespace, which
# it removes on exit.
#
# Usage: hack/bench-flat-restore.sh [N=10000] [E=5] [variant=nft|legacy]
set -euo pipefail
n=${1:-10000}
e=${2:-5}
variant=${3:-nft}
ns="sy-flatref-$$"
rules=$(mktemp)
trap 'rm -f "$rules"; ip netns del "$ns" 2>/dev/null || true' EXIT
ip netns add "$ns"

awk -v n="$n" -v e="$e" 'BEGIN {
	print "*nat"
	print ":FLAT-SERVICES - [0:0]"
	for (i = 0; i < n; i++) printf(":FLAT-SVC-%d - [0:0]\n", i)
	print "-A PREROUTING -j FLAT-SERVICES"
	print "-A OUTPUT -j FLAT-SERVICES"
	for (i = 0; i < n; i++) {
		a = int(i / 250); b = i % 250 + 1
		printf("-A FLAT-SERVICES -d 10.96.%d.%d/32 -p tcp -m tcp --dport 80 -j FLAT-SVC-%d\n", a, b, i)
		for (j = 0; j < e; j++) {
			left = e - j
			if (left > 1)
				printf("-A FLAT-SVC-%d -m statistic --mode random --probability %.8f -p tcp -m tcp -j DNAT --to-destination 10.244.%d.%d:8080\n", i, 1.0 / left, a, (b + j) % 250 + 1)
			else
				printf("-A FLAT-SVC-%d -p tcp -m tcp -j DNAT --to-destination 10.244.%d.%d:8080\n", i, a, (b + j) % 250 + 1)
		}
	}
	print "COMMIT"
}' >"$rules"

start=$(date +%s%N)
ip netns exec "$ns" "iptables-$variant-restore" --noflush <"$rules"
end=$(date +%s%N)
ms=$(((end - start) / 1000000))
printf 'flat restore: %d services x %d endpoints, %d rules, %d chains, iptables-%s: %d.%03d s\n' \
	"$n" "$e" "$(grep -c '^-A' "$rules")" "$((n + 1))" "$variant" $((ms / 1000)) $((ms % 1000))
