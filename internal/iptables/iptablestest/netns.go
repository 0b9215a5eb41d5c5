package iptablestest

import (
	"testing"

	"github.com/switchyard/switchyard/internal/iptables"
	"github.com/switchyard/switchyard/internal/netnstest"
	"github.com/switchyard/switchyard/proxier/model"
)

// ExecIn returns a real Exec that programs the family's iptables of variant inside the test
// namespace ns, for privileged tests. t.Cleanup closes the namespace handle it holds.
func ExecIn(t testing.TB, ns *netnstest.NS, family model.IPFamily, variant iptables.Variant) *iptables.Exec {
	t.Helper()
	h, err := ns.Handle()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	e, err := iptables.NewExec(family, variant, iptables.InNamespace(h))
	if err != nil {
		t.Fatal(err)
	}
	return e
}
