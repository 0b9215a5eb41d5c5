package main

import (
	"testing"

	"github.com/switchyard/switchyard/internal/sysctltest"
	"github.com/switchyard/switchyard/proxier/conntrack"
)

// TestConntrackDefaults: with kube-proxy's defaults and nothing on the command line, a 2-CPU node
// gets kube-proxy's nf_conntrack_max (the 128Ki minimum), hash table and TCP timeouts; and a
// read-only /proc/sys stops nothing.
func TestConntrackDefaults(t *testing.T) {
	opts, _, err := parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	sys := sysctltest.New(map[string]string{conntrack.SysctlMax: "65536", conntrack.ParamHashsize: "16384",
		conntrack.SysctlTCPTimeoutEstablished: "432000", conntrack.SysctlTCPTimeoutCloseWait: "60"})
	if unset := conntrack.Apply(sys, opts.Conntrack.settings(), 2); len(unset) != 0 {
		t.Fatal(unset)
	}
	want := map[string]string{conntrack.SysctlMax: "131072", conntrack.ParamHashsize: "32768",
		conntrack.SysctlTCPTimeoutEstablished: "86400", conntrack.SysctlTCPTimeoutCloseWait: "3600"}
	for k, v := range want {
		if sys.Values[k] != v {
			t.Errorf("%s = %s, want %s", k, sys.Values[k], v)
		}
	}
	ro := sysctltest.New(map[string]string{conntrack.SysctlMax: "65536"})
	ro.ReadOnly[conntrack.SysctlMax] = true
	setConntrack(opts, ro) // logs, does not stop
}
