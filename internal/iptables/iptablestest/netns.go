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

// EachVariant runs fn as one subtest per iptables variant (nft, then legacy), each with a fresh
// throwaway namespace named after nsPrefix and an Exec programming the family's iptables there, so
// that a privileged test checks both kinds of kernel tables the same way.
func EachVariant(t *testing.T, family model.IPFamily, nsPrefix string, fn func(t *testing.T, v iptables.Variant, ns *netnstest.NS, ipt *iptables.Exec)) {
	t.Helper()
	for _, v := range []iptables.Variant{iptables.VariantNFT, iptables.VariantLegacy} {
		t.Run(string(v), func(t *testing.T) {
			ns := netnstest.New(t, nsPrefix)
			fn(t, v, ns, ExecIn(t, ns, family, v))
		})
	}
}
