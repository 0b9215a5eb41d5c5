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
// Apply (sysctl.go) sets the table's size and timeouts that kube-proxy's --conntrack-* flags ask
// for, through internal/sysctl: sysctl.Proc for a kernel, sysctltest.Fake for tests.
package conntrack
