package main

import (
	"net/netip"
	"testing"

	"github.com/switchyard/switchyard/internal/sysctltest"
	"github.com/switchyard/switchyard/proxier/conntrack"
	"github.com/switchyard/switchyard/proxier/iptables"
	"github.com/switchyard/switchyard/proxier/model"
)

func TestKernelFacts(t *testing.T) {
	for _, c := range []struct {
		name          string
		flag          bool
		nodePortAddrs []string
		routeLocalnet string
		readOnly      bool
		beLiberal     string // "": the sysctl does not exist
		wantLocalnet  string
		wantLocalhost bool // effective afterwards
		wantLiberal   bool
	}{
		{name: "defaults set route_localnet", flag: true, routeLocalnet: "0", beLiberal: "0", wantLocalnet: "1", wantLocalhost: true},
		{name: "already set on a read-only /proc/sys", flag: true, routeLocalnet: "1", readOnly: true, beLiberal: "0", wantLocalnet: "1", wantLocalhost: true},
		{name: "cannot set: localhost node ports off", flag: true, routeLocalnet: "0", readOnly: true, beLiberal: "0", wantLocalnet: "0"},
		{name: "flag off leaves route_localnet alone", flag: false, routeLocalnet: "0", beLiberal: "0", wantLocalnet: "0"},
		{name: "nodeport-addresses without loopback", flag: true, nodePortAddrs: []string{"192.168.50.0/24"}, routeLocalnet: "0", beLiberal: "0", wantLocalnet: "0"},
		{name: "nodeport-addresses with loopback", flag: true, nodePortAddrs: []string{"127.0.0.1/32"}, routeLocalnet: "0", beLiberal: "0", wantLocalnet: "1", wantLocalhost: true},
		{name: "be_liberal on", flag: false, routeLocalnet: "0", beLiberal: "1", wantLocalnet: "0", wantLiberal: true},
		{name: "be_liberal unreadable counts as off", flag: false, routeLocalnet: "0", wantLocalnet: "0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			values := map[string]string{sysctlRouteLocalnet: c.routeLocalnet}
			if c.beLiberal != "" {
				values[conntrack.SysctlTCPBeLiberal] = c.beLiberal
			}
			sys := sysctltest.New(values)
			sys.ReadOnly[sysctlRouteLocalnet] = c.readOnly
			opts := iptables.DefaultOptions(model.IPv4)
			opts.LocalhostNodePorts = c.flag
			for _, p := range c.nodePortAddrs {
				opts.NodePortAddresses = append(opts.NodePortAddresses, netip.MustParsePrefix(p))
			}
			kernelFacts(&opts, sys)
			if got := sys.Values[sysctlRouteLocalnet]; got != c.wantLocalnet {
				t.Errorf("route_localnet = %s, want %s", got, c.wantLocalnet)
			}
			if got := opts.LocalhostNodePortsEffective(); got != c.wantLocalhost {
				t.Errorf("localhost node ports effective = %v, want %v", got, c.wantLocalhost)
			}
			if opts.ConntrackTCPLiberal != c.wantLiberal {
				t.Errorf("ConntrackTCPLiberal = %v, want %v", opts.ConntrackTCPLiberal, c.wantLiberal)
			}
		})
	}
}

// TestLocalhostNodePortsFlagReachesOptions: --iptables-localhost-nodeports is kube-proxy's, on by
// default, and reaches the iptables options.
func TestLocalhostNodePortsFlagReachesOptions(t *testing.T) {
	for _, c := range []struct {
		args []string
		want bool
	}{{nil, true}, {[]string{"--iptables-localhost-nodeports=false"}, false}} {
		o, _, err := parseFlags(append([]string{"--hostname-override=node-a"}, c.args...))
		if err != nil {
			t.Fatal(err)
		}
		if got := iptablesOptions(o).LocalhostNodePorts; got != c.want {
			t.Errorf("%v: LocalhostNodePorts = %v, want %v", c.args, got, c.want)
		}
	}
}
