// Package iptables is Switchyard's iptables backend: a drop-in for kube-proxy's iptables mode.
//
// # Shape
//
// Rendering is pure: Renderer turns a model.Snapshot and Options into iptables-restore text
// (render.go, render_service.go; every chain name comes from names.go). Proxier applies it through
// internal/iptables' Interface, which Exec implements with the iptables binaries (iptables itself for
// the jumps from the built-in chains, one exec of iptables-restore --noflush -w per transaction) and
// iptablestest.Fake implements in memory, rejecting what the kernel rejects. Stale UDP conntrack entries are left to
// proxier/conntrack. Nothing here flushes rules because Switchyard stops; only Cleanup removes them.
//
// # Chain layout, and why
//
// Where the time goes: nearly all of a kube-proxy sync at scale is one iptables-nft-restore, and its
// cost grows with the square of the number of chains in that transaction (see docs/measurements.md,
// re-measured here). kube-proxy uses a chain per service (KUBE-SVC) and one per endpoint (KUBE-SEP),
// six chains and 17 rules for a ClusterIP service with 5 endpoints. Switchyard keeps the per-service
// chain and writes the DNAT for each endpoint inline in it:
//
//	SY-SERVICES      -d 10.96.5.0/24 -j SY-DST-<hash>              (one rule per /24 in use)
//	SY-DST-<hash>    -d VIP -p tcp --dport P -j SY-SVC-<hash>      (one rule per service address)
//	SY-SVC-<hash>    ! -s <cluster CIDR> -d VIP ... -j MARK --set-xmark 0x4000/0x4000
//	                 -p tcp -m statistic --probability 1/n -j DNAT --to-destination ep1
//	                 ...                                          -j DNAT --to-destination epN
//
// That is 7 rules and one chain for the same service. The dispatch rules are sharded by the /24
// (IPv6: /120) of the destination, so adding or removing a service rewrites a shard of at most a
// few hundred rules rather than a chain with one rule per service (measured on nft at 10k
// services: ~4.3 s per service add unsharded, ~0.36 s sharded, both under heavy machine load),
// and a first packet walks one rule per shard plus its shard instead of every service's rule. Other per-service chains exist only when the
// behaviour needs them: SY-SVL (this node's endpoints, for a Local traffic policy) and SY-EXT (entry
// for node-port, external-IP and LB traffic: masquerade for eTP=Cluster; for eTP=Local the pod and
// node short-circuits of kube-proxy, then SY-SVL). kube-proxy's KUBE-FW chain is folded into the
// dispatch rules (one "-s range -d LBIP" rule per source range), with the drop for other sources in
// filter SY-FIREWALL, where the packet still carries the LB IP because nothing DNATed it.
// ClientIP affinity needs no per-endpoint chain either: xt_recent's --update (check and refresh)
// and --set are matches, so each endpoint gets one lookup rule and its DNAT rule records the client.
//
// Hairpin. kube-proxy's per-endpoint chain exists mostly for "-s <endpoint> -j KUBE-MARK-MASQ" ahead
// of the DNAT to that same endpoint, so a pod reaching itself through its service is masqueraded
// (otherwise it would see its own address as the source and drop the reply). Marking every source
// that is some endpoint would over-masquerade a pod landing on another endpoint. Instead nat
// POSTROUTING, which sees the packet after DNAT, sends DNATed packets through SY-HAIRPIN, whose rules
// "-s IP -d IP -j MARK" mark exactly the packets whose source is their own destination. Only
// endpoints on this node can be the source of traffic this node DNATs for them; an endpoint with no
// node (maintained by hand) counts when its address is one this node can hold: inside its pod CIDR,
// one of its own addresses, or anything when the node has no pod CIDR. So SY-HAIRPIN has one rule per
// local endpoint address (bounded by the node's pod capacity), shared by all services. That bound
// matters twice: POSTROUTING walks the chain for every new DNATed connection, and a change to a local
// endpoint rewrites it. (Counting every endpoint with no node as local once gave a 50,000-rule chain
// at 10k selectorless services, and 1.5 s per endpoint change.) The difference from kube-proxy: a pod on ANOTHER node that reaches this node's
// eTP=Local node port, is short-circuited to the cluster path as pod traffic, and lands on itself is
// not masqueraded here (kube-proxy would); that path is broken in kube-proxy too, as the reply
// bypasses this node.
//
// Localhost node ports and the INVALID drop, as kube-proxy does them. With
// --iptables-localhost-nodeports (the default) on IPv4, and --nodeport-addresses admitting
// 127.0.0.1, node ports also answer on 127.0.0.0/8 (the daemon sets route_localnet=1, or the kernel
// drops those packets as martians), and filter SY-LOCALNET-GUARD, jumped to from INPUT and OUTPUT,
// drops traffic to 127.0.0.0/8 from other sources that nothing DNATed: route_localnet would
// otherwise expose what listens on loopback to the node's neighbours. Otherwise the jump to nat
// SY-NODEPORTS leaves loopback destinations out and the guard chain stays empty. SY-FORWARD drops
// packets conntrack calls INVALID unless nf_conntrack_tcp_be_liberal is on. Both the drop and the
// loopback node-port jumps count packets into kube-proxy's nfacct counters when they exist
// (Options.NFAcctCounters), for its two nfacct metrics.
//
// One path from the model to restore text. What the backend believes the kernel holds is one
// kernelState: the text of the shared chains and canaries, and the names of the per-service chains,
// as the last successful restore left them; or every chain's text, read back with iptables-save.
// Every sync (full, incremental, verified, staged) renders through Renderer.render, which picks
// the services to consider (all, or the changed ones), and one emitter (emit) writes whatever of
// them, and of the shared chains, the kernelState does not show as already in place. Only a
// successful restore changes the kernelState (kernelState.applied).
//
// Incremental syncs. The renderer keeps each service's rendered share and the assembled shared
// chains. An incremental render writes the chains of changed services and only those shared chains
// (and dispatch shards) whose text changed, so replacing an endpoint at 10k services writes one
// chain; an unsharded 10k-rule dispatch chain alone took ~1.5 s to rewrite on an idle machine. Deleted services' chains are declared
// (which also creates any that vanished) and then deleted in the same transaction.
//
// Staging. iptables-restore commits per table; a transaction is one "*table ... COMMIT" block. A
// cold start on nft is one nat transaction with one chain per service, so its cost still grows
// faster than linearly. A chain nothing jumps to changes no traffic, so when the Proxier knows the
// exact set of chains in the kernel (it found the tables empty, or has synced since), it loads new
// per-service chains in batches of StagingFor(variant) chains first, then applies the final
// transaction that declares the dispatch chains and so swaps them all in at once. Per-batch cost on
// nft does not grow with the table (measured: ~0.23 s per 1000 chains whether the table holds 0 or
// 9000), so the total is linear. On a cold start the dispatch shards are staged too: the first
// batch declares them and each batch appends the dispatch rules of its own services, so the final
// transaction only rewrites SY-SERVICES and the other shared chains. Its 10k jumps to distinct
// chains had cost about as much in the final transaction as all the batches together (10k x 5 on
// nft: ~1 s of a ~2.5 s cold start; 0.4-0.8 s spread over the batches). Legacy rewrites the whole
// table on each commit, so it gets no staging. A failed batch leaves only unreferenced chains
// behind and makes the next sync full.
//
// Full syncs. A full sync must not trust what was applied before, but rewriting 10k services'
// chains costs ~14 CPU-seconds on nft, too much for a periodic resync. When the canary shows our
// rules are in place, a full sync therefore reads nat and filter back with iptables-save and writes
// only the chains whose text differs (the same render, against the kernelState read back), deleting chains of ours nothing uses (which
// also sweeps up after an earlier process) and re-adding missing jumps. The comparison is exact
// because the renderer writes rules in the form iptables-save prints them (probabilities included;
// tested against both variants, IPv4 and IPv6). Without the canary the tables are treated as
// empty: no read-back, staging as below.
//
// Ordering within a restore: nat first, because it is the only table whose rules reference
// per-service chains and so the one the kernel can refuse; if it does, nothing changed. filter only
// touches chains that always exist. The jumps from built-in chains are ensured (iptables -C, then -I) at
// start and after the canary disappears, and on a cold start before the big restore: iptables-nft
// reads a whole table for every rule check, which costs ~0.4 s per check at 10k services.
//
// # Measurements
//
// ClusterIP services x 5 endpoints (kube-proxy's benchmark shape) through Proxier and the real
// binaries in a throwaway namespace:
// SWITCHYARD_PRIVILEGED=1 go test -run XXX -bench KernelSync -benchtime 1x ./proxier/iptables
// The 2-core machine was shared with other jobs at a load average of 15-19, so wall times are
// inflated several-fold; CPU time (Go side + iptables binaries) is the steadier figure.
//
//	                       1,000 services     5,000 services     10,000 services
//	first sync, CPU/wall
//	  nft, staged          0.34 s / 0.83 s    1.51 s / 5.2 s     3.8 s / 9.5 s
//	  nft, one-shot        0.30 s / 0.59 s    3.5 s / 17.9 s     17.3 s / 97.8 s
//	  legacy               0.15 s / 0.20 s    0.52 s / 0.81 s    1.0 s / 2.0 s
//	  kube-proxy v1.31     2.3 s              117 s              835 s          (nft, wall, idle machine)
//	full resync, no change (CPU/wall)
//	  nft                  0.18 s / 0.92 s    0.88 s / 4.6 s     1.9 s / 5.2 s  (14.1 CPU-s when rewriting all)
//	  legacy               0.07 s / 0.07 s    0.35 s / 0.77 s    0.71 s / 1.5 s
//	one endpoint replaced (wall): nft 61 / 225 / 175 ms; legacy 127 / 391 / 1315 ms (legacy rewrites
//	  the whole table on every commit)
//	one service added (wall):     nft 38 / 295 / 244 ms; legacy 121 / 470 / 1141 ms
//
// On an idle machine a one-shot iptables-nft-restore of the same text took 0.25 s, 3.2 s and 8.9 s,
// and 1000-chain batches cost ~0.23 s each whether the table held 0 or 9,000 chains. Rules: 7 nat
// rules per such service (70,048 in all at 10k, counting shard jumps and fixed chains) against
// kube-proxy's 17 (170,028).
package iptables
