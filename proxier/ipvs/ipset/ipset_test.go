package ipset_test

import (
	"net/netip"
	"reflect"
	"sort"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/switchyard/switchyard/internal/netnstest"
	"github.com/switchyard/switchyard/proxier/ipvs/ipset"
	"github.com/switchyard/switchyard/proxier/ipvs/ipset/ipsettest"
)

var testSets = []struct {
	set     ipset.Set
	entries []ipset.Entry
}{
	{ipset.Set{Name: "SY-TEST-IP", Type: ipset.HashIP, Family: 4}, []ipset.Entry{{IP: netip.MustParseAddr("10.96.0.1")}}},
	{ipset.Set{Name: "SY-TEST-IPPORT", Type: ipset.HashIPPort, Family: 4}, []ipset.Entry{
		{IP: netip.MustParseAddr("10.96.0.1"), Protocol: "tcp", Port: 443},
		{IP: netip.MustParseAddr("10.96.0.1"), Protocol: "udp", Port: 53},
		{IP: netip.MustParseAddr("10.96.0.2"), Protocol: "sctp", Port: 9},
	}},
	{ipset.Set{Name: "SY-TEST-IPPORTIP", Type: ipset.HashIPPortIP, Family: 4}, []ipset.Entry{
		{IP: netip.MustParseAddr("10.244.1.5"), Protocol: "tcp", Port: 8080, IP2: netip.MustParseAddr("10.244.1.5")},
	}},
	{ipset.Set{Name: "SY-TEST-IPPORTNET", Type: ipset.HashIPPortNet, Family: 4}, []ipset.Entry{
		{IP: netip.MustParseAddr("192.0.2.10"), Protocol: "tcp", Port: 80, Net: netip.MustParsePrefix("203.0.113.0/24")},
	}},
	{ipset.Set{Name: "SY-TEST-IPPORT6", Type: ipset.HashIPPort, Family: 6}, []ipset.Entry{
		{IP: netip.MustParseAddr("fd00:96::1"), Protocol: "tcp", Port: 80},
	}},
}

// exercise runs the same scenario against any ipset.Netlink and returns the members it lists, so the fake
// and the kernel can be held to the same answers.
func exercise(t *testing.T, h ipset.Netlink) map[string][]string {
	t.Helper()
	got := map[string][]string{}
	for _, ts := range testSets {
		if created, err := ipset.Ensure(h, ts.set); err != nil || !created {
			t.Fatalf("Ensure(%s) = %v, %v; want created", ts.set.Name, created, err)
		}
		if created, err := ipset.Ensure(h, ts.set); err != nil || created {
			t.Fatalf("second Ensure(%s) = %v, %v; want existing", ts.set.Name, created, err)
		}
		for _, e := range ts.entries {
			if err := ipset.Add(h, ts.set, e); err != nil {
				t.Fatalf("Add: %v", err)
			}
		}
		// The kernel refuses a duplicate add and the deletion of an absent entry.
		if err := ipset.Add(h, ts.set, ts.entries[0]); !ipset.IsExist(err) {
			t.Errorf("duplicate add to %s: got %v, want EEXIST", ts.set.Name, err)
		}
		entries, found, err := ipset.List(h, ts.set)
		if err != nil || !found {
			t.Fatalf("List(%s) = %v, %v", ts.set.Name, found, err)
		}
		var names []string
		for e := range entries {
			names = append(names, e.String())
		}
		sort.Strings(names)
		got[ts.set.Name] = names
		if err := ipset.Del(h, ts.set, ts.entries[0]); err != nil {
			t.Fatalf("Del: %v", err)
		}
		if err := ipset.Del(h, ts.set, ts.entries[0]); !ipset.IsExist(err) {
			t.Errorf("deleting an absent entry from %s succeeded", ts.set.Name)
		}
	}
	// A set with the same name and another type is not adopted.
	if _, err := ipset.Ensure(h, ipset.Set{Name: "SY-TEST-IP", Type: ipset.HashIPPort, Family: 4}); err == nil {
		t.Errorf("Ensure adopted a set of the wrong type")
	}
	if _, _, err := ipset.List(h, ipset.Set{Name: "SY-TEST-IP", Type: ipset.HashIPPort, Family: 4}); err == nil {
		t.Errorf("List read a set as the wrong type")
	}
	if _, found, err := ipset.List(h, ipset.Set{Name: "SY-TEST-MISSING", Type: ipset.HashIP}); err != nil || found {
		t.Errorf("List(missing) = %v, %v; want not found, no error", found, err)
	}
	if err := ipset.Add(h, ipset.Set{Name: "SY-TEST-MISSING", Type: ipset.HashIP}, ipset.Entry{IP: netip.MustParseAddr("10.0.0.1")}); err == nil {
		t.Errorf("adding to a missing set succeeded")
	}
	// An IPv6 address does not go into an IPv4 set.
	if err := ipset.Add(h, testSets[0].set, ipset.Entry{IP: netip.MustParseAddr("fd00::1")}); err == nil {
		t.Errorf("adding an IPv6 address to an IPv4 set succeeded")
	}
	names, err := ipset.Names(h)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != len(testSets) {
		t.Errorf("Names = %v, want %d sets", names, len(testSets))
	}
	for _, ts := range testSets {
		if err := h.IpsetDestroy(ts.set.Name); err != nil {
			t.Errorf("destroy %s: %v", ts.set.Name, err)
		}
	}
	// The netlink library reports no error for destroying a missing set; pin that, the fake copies it.
	if err := h.IpsetDestroy(testSets[0].set.Name); err != nil {
		t.Errorf("destroying a missing set: %v", err)
	}
	return got
}

var wantMembers = map[string][]string{
	"SY-TEST-IP":        {"10.96.0.1"},
	"SY-TEST-IPPORT":    {"10.96.0.1,tcp:443", "10.96.0.1,udp:53", "10.96.0.2,sctp:9"},
	"SY-TEST-IPPORTIP":  {"10.244.1.5,tcp:8080,10.244.1.5"},
	"SY-TEST-IPPORTNET": {"192.0.2.10,tcp:80,203.0.113.0/24"},
	"SY-TEST-IPPORT6":   {"fd00:96::1,tcp:80"},
}

func TestFakeBehavesLikeKernel(t *testing.T) {
	f := ipsettest.NewFake()
	if got := exercise(t, f); !reflect.DeepEqual(got, wantMembers) {
		t.Errorf("members:\n got %v\nwant %v", got, wantMembers)
	}
	if len(f.Sets) != 0 {
		t.Errorf("sets left behind: %v", f.Sets)
	}
}

// TestRealKernelIpset runs the same scenario against the kernel's ipset, inside a throwaway namespace.
func TestRealKernelIpset(t *testing.T) {
	netnstest.Require(t)
	ns := netnstest.New(t, "ipset")
	h := ns.Netlink(t, unix.NETLINK_NETFILTER)
	if got := exercise(t, h); !reflect.DeepEqual(got, wantMembers) {
		t.Errorf("members:\n got %v\nwant %v", got, wantMembers)
	}
	if out := ns.MustRun(t, "ipset", "list", "-n"); out != "" {
		t.Errorf("sets left in the namespace: %s", out)
	}
}

func TestEntryString(t *testing.T) {
	for _, c := range []struct {
		e    ipset.Entry
		want string
	}{
		{ipset.Entry{IP: netip.MustParseAddr("10.0.0.1"), Protocol: "udp", Port: 53}, "10.0.0.1,udp:53"},
	} {
		if got := c.e.String(); got != c.want {
			t.Errorf("%#v.String() = %q, want %q", c.e, got, c.want)
		}
	}
}
