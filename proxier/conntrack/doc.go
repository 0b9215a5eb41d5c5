// Package conntrack keeps the node's conntrack table in line with the service model, and sets the
// table's size and timeouts.
//
// UDP has no connection teardown, so an entry that points at an endpoint that is gone (or that was
// created while a service had no endpoints, and so was never DNATed) keeps black-holing a client that
// keeps sending until the entry times out, which it never does while packets keep coming. Like
// kube-proxy since v1.32, a Reconciler lists the table after each sync and deletes the UDP entries
// the current services and endpoints no longer justify (Stale, a pure function of the model and the
// listed entries); being state-based, it retries a failed delete on the next sync by itself. The
// table is reached through Table: Netlink for a kernel, conntracktest.Fake in tests.
//
// A pass costs one listing of the family's whole table, plus a second walk when something is stale
// (netlink deletes entries by walking the table), as kube-proxy's does; so it runs only when a UDP
// service changed, on full syncs and after a failure. Measured on 2 shared cores (go test -bench
// . and, privileged, -bench Netlink50k): deciding over 10k UDP services x 5 endpoints and 50k
// entries, 20-30 ms (up to 100 ms under load); a partial sync that changed no UDP service, under 0.1 µs
// to 0.2 ms; netlink listing of a real 50k-entry table, 0.3-0.4 s, and a pass that deletes 1k of
// them, 0.5-0.8 s.
//
// Apply (sysctl.go) sets the table's size and timeouts that kube-proxy's --conntrack-* flags ask
// for, through internal/sysctl: sysctl.Proc for a kernel, sysctltest.Fake for tests.
package conntrack
