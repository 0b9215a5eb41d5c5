package ipvs

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/proxier/model"

	"github.com/switchyard/switchyard/internal/golden"
)

// renderSnapshot computes the desired state of a whole snapshot, purely.
func renderSnapshot(t *testing.T, snap *model.Snapshot, opts Options, addrs []netip.Addr) *desiredState {
	t.Helper()
	if err := opts.Validate(); err != nil {
		t.Fatal(err)
	}
	d := newDesiredState()
	na := selectNodeAddrs(&opts, addrs)
	for _, name := range snap.SortedServiceNames() {
		r, err := renderService(snap.Services[name], snap.Endpoints[name], snap.Node, na, &opts)
		if err != nil {
			d.set(name, nil)
			continue
		}
		d.set(name, &renderedService{svc: snap.Services[name], eps: snap.Endpoints[name], render: r})
	}
	return d
}

// describe prints a desired state for reviewers: virtual servers with their real servers, the
// addresses for kube-ipvs0 and every ipset's members, all sorted.
func describe(d *desiredState, f model.IPFamily) string {
	var b strings.Builder
	var keys []vsKey
	for k := range d.claims {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b vsKey) int {
		if c := a.Addr.Compare(b.Addr); c != 0 {
			return c
		}
		if a.Protocol != b.Protocol {
			return strings.Compare(string(a.Protocol), string(b.Protocol))
		}
		return int(a.Port) - int(b.Port)
	})
	b.WriteString("# virtual servers\n")
	for _, k := range keys {
		vs := d.virtualServer(k)
		fmt.Fprintf(&b, "%s %s %s", k, vs.Scheduler, vs.Kind)
		if vs.Persistent {
			fmt.Fprintf(&b, " persistent=%ds", vs.Timeout)
		}
		fmt.Fprintf(&b, " (%s)\n", vs.Service)
		for _, dst := range vs.Dests {
			fmt.Fprintf(&b, "  -> %s weight 1\n", dst)
		}
	}
	b.WriteString("# " + DummyDevice + "\n")
	var addrs []netip.Addr
	for a := range d.addrs {
		addrs = append(addrs, a)
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	for _, a := range addrs {
		fmt.Fprintf(&b, "%s\n", a)
	}
	for k := setKind(0); k < numSetKinds; k++ {
		fmt.Fprintf(&b, "# ipset %s (%s)\n", setName(f, k), setDefs[k].typ)
		var members []string
		for e := range d.sets[k] {
			members = append(members, e.String())
		}
		slices.Sort(members)
		for _, m := range members {
			b.WriteString(m + "\n")
		}
	}
	return b.String()
}

func TestGoldenDesiredState(t *testing.T) {
	nodeAddrs := []netip.Addr{ip("127.0.0.1"), nodeIP, node2IP, ip("10.244.1.1"), ip("::1"), ip("fd00:50::10"), ip("fe80::1")}
	t.Run("IPv4", func(t *testing.T) {
		golden.Check(t, "desired-ipv4.golden", []byte(describe(renderSnapshot(t, fixture(), testOptions(), nodeAddrs), model.IPv4)))
	})
	t.Run("IPv6", func(t *testing.T) {
		o := testOptions()
		o.Family = model.IPv6
		o.NodePortAddresses = nil // the default: every non-loopback, non-link-local address
		o.ClusterCIDRs = []netip.Prefix{netip.MustParsePrefix("fd00:244::/48")}
		golden.Check(t, "desired-ipv6.golden", []byte(describe(renderSnapshot(t, fixture(), o, nodeAddrs), model.IPv6)))
	})
	t.Run("scheduler", func(t *testing.T) {
		o := testOptions()
		o.Scheduler = "mh"
		d := renderSnapshot(t, fixture(), o, nodeAddrs)
		for k := range d.claims {
			if s := d.virtualServer(k).Scheduler; s != "mh" {
				t.Fatalf("%s has scheduler %q, want mh", k, s)
			}
		}
	})
}

func TestGoldenRules(t *testing.T) {
	o := testOptions()
	golden.Check(t, "rules-ipv4.golden", renderRules(&o))
	o.MasqueradeAll = true
	o.MasqueradeBit = 13
	o.RandomFully = true
	golden.Check(t, "rules-ipv4-masquerade-all.golden", renderRules(&o))
	o = testOptions()
	o.Family = model.IPv6
	o.ClusterCIDRs = []netip.Prefix{netip.MustParsePrefix("fd00:244::/48")}
	golden.Check(t, "rules-ipv6.golden", renderRules(&o))
	o = testOptions()
	o.BridgeInterface = "cni0"
	golden.Check(t, "rules-ipv4-bridge-interface.golden", renderRules(&o))
	o = testOptions()
	o.InterfaceNamePrefix = "veth"
	golden.Check(t, "rules-ipv4-interface-prefix.golden", renderRules(&o))
}
