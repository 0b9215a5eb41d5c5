// Package ipvs renders Switchyard's service model into the kernel's IPVS tables (--proxy-mode=ipvs):
// a virtual server per service address and port with the chosen endpoints as real servers, the
// service addresses bound to the dummy interface kube-ipvs0, and a constant set of iptables rules over
// ipsets for what IPVS cannot do.
//
// # Layout
//
//   - render.go: pure. One service port in, its virtual servers, kube-ipvs0 addresses and ipset
//     entries out. Endpoints come from model.Categorize only: a ClusterIP follows
//     internalTrafficPolicy, external IPs, load-balancer IPs and NodePorts follow
//     externalTrafficPolicy. A family's instance handles the services with a ClusterIP of its family.
//   - state.go: the renders aggregated with reference counts (an address or set entry shared by
//     several ports) and change marks; two services claiming one virtual server is resolved by name.
//   - apply_ipvs.go, apply_addrs.go, graceful.go: diff against what the backend knows the kernel holds
//     and issue only the calls needed. Additions before removals.
//   - rules.go: the iptables rules, a function of the options alone (28 rules for IPv4, at any scale).
//   - kernel.go, counting.go: the seams (IPVS, Links, ipset.Netlink, internal/sysctl, internal/iptables'
//     Interface and proxier/conntrack's Table), each satisfied by the real handle and by a
//     stateful fake in a test-support package (ipvstest, ipsettest, iptablestest, conntracktest,
//     internal/sysctltest), and a wrapper that counts round trips per sync.
//   - cleanup.go: Cleanup and CleanupHost.
//
// # Syncs
//
// A full sync (the first, any after an error, and the hourly resync: internal/syncloop decides)
// re-renders everything, lists the kernel (one dump of virtual servers, one listing of real servers
// per wanted virtual server, one per ipset, kube-ipvs0's addresses and the node's addresses) and
// repairs any drift. An ordinary sync, the periodic --ipvs-sync-period one included, trusts its
// record of the kernel and Snapshot.Changed: it renders only the changed services and touches only
// the entries they own, plus one look-up of kube-ipvs0 (a deleted device forces a full sync). With
// nothing changed it writes nothing.
//
// The node's addresses, which NodePorts listen on, are read again every --ipvs-sync-period
// (Options.NodeAddressPeriod): by any sync half a period after the last read, so always by the
// periodic one. kube-proxy reads them on every sync; here that would cost every incremental sync a
// dump of kube-ipvs0's thousands of addresses. When they changed, the sync becomes a full one.
//
// # Ownership
//
// Switchyard has no comment field in IPVS to mark its virtual servers, so a listed virtual server is
// treated as its own when its address is bound to kube-ipvs0, when the NodePort ipsets (which persist
// across restarts) record its address and port, or when this process created it; never when its
// address is in --ipvs-exclude-cidrs. Everything else is left alone, by syncs and by Cleanup.
//
// # Graceful termination
//
// A TCP or SCTP real server that is removed or starts terminating gets weight 0 and is deleted once the
// kernel counts no active or inactive connections to it, or after Options.GracePeriod. A UDP one is
// deleted at once; the conntrack reconciler deletes its entries after the sync (proxier/conntrack). Note that
// closed TCP connections stay "inactive" in IPVS for its TIME_WAIT timeout (2 minutes).
//
// # Measured (services x 5 endpoints, every tenth also a NodePort; netlink round trips per sync)
//
//	                                   fake, native CPU    Debian 6.1 kernel in hack/vm (TCG)
//	first sync, 1k                     32 ms, 9,729 rt     4.2 s
//	first sync, 10k                    400 ms, 97,029 rt   62 s
//	unchanged full resync, 10k         324 ms, 11,015 rt   14.6 s (no netlink writes)
//	one endpoint changed, 1k           0.08 ms, 5 rt       9 ms
//	one endpoint changed, 10k          0.6 ms, 5 rt        11 ms wall, 12 ms CPU (3 writes)
//
// IPVS calls in a first sync: one listing plus one per virtual server and one per real server (6.0 per
// virtual server at 5 endpoints). VM figures swing with the host's load; compare them only within a
// run. Commands: `go test ./proxier/ipvs -run XXX -bench .` and BenchmarkRealKernel's comment.
//
// # Kernel support
//
// NewHost refuses to start without IPVS (CheckKernel: the generic-netlink family "IPVS") or without
// the scheduler's module (CheckScheduler), naming the missing support and suggesting
// --proxy-mode=iptables. Creating kube-ipvs0 without CONFIG_DUMMY fails with an error saying so.
package ipvs
