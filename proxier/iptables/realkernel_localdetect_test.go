package iptables_test

import (
	"strings"
	"testing"

	utiliptables "github.com/switchyard/switchyard/internal/iptables"
	"github.com/switchyard/switchyard/internal/netnstest"
	"github.com/switchyard/switchyard/proxier/conntrack"
	"github.com/switchyard/switchyard/proxier/iptables"
	"github.com/switchyard/switchyard/proxier/model"
)

// TestRealKernelInterfaceDetectors runs the interface-based local-traffic detectors in the real
// kernel, in the lab of TestRealKernel, whose pods each hang off a host-side veth named "v<pod>":
// pod traffic to a ClusterIP keeps its source only when it enters from a pod interface the mode
// names; the uplink's client and the node itself are masqueraded. The rules must also read back
// exactly as rendered, or every full sync would rewrite them.
func TestRealKernelInterfaceDetectors(t *testing.T) {
	netnstest.Require(t)
	all := []string{"b1", "b2", "b3"}
	for _, tc := range []struct {
		name     string
		detector iptables.LocalDetector
		// the pods whose traffic is local: every pod for the prefix, only pc for its "bridge"
		local map[string]bool
	}{
		{"InterfaceNamePrefix", iptables.LocalDetector{InterfaceNamePrefix: "v"}, map[string]bool{"pc": true, "b1": true}},
		{"BridgeInterface", iptables.LocalDetector{BridgeInterface: "vpc"}, map[string]bool{"pc": true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t)
			opts := traceOptions()
			opts.LocalDetector = tc.detector
			snap := labSnapshot(all...)
			err := l.node.Do(func() error {
				ipt, err := utiliptables.NewExec(model.IPv4, utiliptables.VariantNFT)
				if err != nil {
					return err
				}
				opts.RandomFully = ipt.HasRandomFully()
				p, err := iptables.NewProxier(iptables.Config{Options: opts, IPTables: ipt, Conntrack: &conntrack.Netlink{}})
				if err != nil {
					return err
				}
				return p.Sync(snap)
			})
			if err != nil {
				t.Fatalf("sync: %v", err)
			}

			saved := l.node.MustRun(t, "iptables-nft-save")
			rendered, err := iptables.RenderFull(labSnapshot(all...), opts)
			if err != nil {
				t.Fatal(err)
			}
			matched := 0
			for _, line := range strings.Split(string(rendered.Restore), "\n") {
				if strings.Contains(line, " -i v") {
					matched++
					if !strings.Contains(saved, line+"\n") {
						t.Errorf("rule not read back as written: %s", line)
					}
				}
			}
			if matched == 0 {
				t.Fatalf("no rule matches the input interface:\n%s", rendered.Restore)
			}

			for _, pod := range []string{"pc", "b1"} {
				want := labGateway
				if tc.local[pod] {
					want = l.podIPs[pod]
				}
				c, s := askMany(t, l.pods[pod], "tcp", "10.96.0.10:80", tries)
				expect(t, pod+" to ClusterIP", c, s, all, func(b string) string {
					if pod == "b1" && b == "b1" {
						return labGateway // hairpin: masqueraded whatever the detector says
					}
					return want
				})
			}
			c, s := askMany(t, l.client, "tcp", "10.96.0.10:80", tries)
			expect(t, "uplink client to ClusterIP", c, s, all, source(labGateway))
			c, s = askMany(t, l.node, "tcp", "10.96.0.10:80", tries)
			expect(t, "node process to ClusterIP", c, s, all, source(labGateway))
		})
	}
}
