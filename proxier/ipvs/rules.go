package ipvs

import (
	"bytes"
	"fmt"
	"strings"

	utiliptables "github.com/switchyard/switchyard/internal/iptables"
	"github.com/switchyard/switchyard/proxier/model"
)

// The iptables side of IPVS mode: a constant handful of rules that match ipsets, so that the rule count
// never grows with the number of services. IPVS itself only schedules and DNATs; everything else a
// Service needs is here:
//   - masquerade: traffic to a ClusterIP that is not pod traffic (from outside the cluster CIDR, or
//     not from the pods' interfaces; all of it under --masquerade-all), to external IPs and NodePorts with externalTrafficPolicy Cluster, and to
//     load-balancer IPs without the Local policy, is marked in nat PREROUTING/OUTPUT and SNATed in
//     POSTROUTING;
//   - hairpin: a local endpoint that reaches itself through its service is SNATed (SY-LOOP-BACK);
//   - NodePort local detection: NodePorts with externalTrafficPolicy Local are never marked, so the
//     client's source address survives;
//   - loadBalancerSourceRanges: filter INPUT drops packets to a firewalled load-balancer IP:port from
//     a source outside its ranges (IPVS hooks LOCAL_IN after the filter table, so it never sees them);
//   - unknown ports: a new connection to an address on kube-ipvs0 on a port no service uses is
//     rejected, instead of reaching whatever the node itself listens on.

// jumpRule is a rule in a built-in chain that sends traffic into one of the backend's chains.
type jumpRule struct {
	table, chain string
	args         []string
}

func jumpRules() []jumpRule {
	c := func(s string) []string { return []string{"-m", "comment", "--comment", s} }
	return []jumpRule{
		{"nat", "PREROUTING", append(c("switchyard ipvs service portals"), "-j", chainServices)},
		{"nat", "OUTPUT", append(c("switchyard ipvs service portals"), "-j", chainServices)},
		{"nat", "POSTROUTING", append(c("switchyard ipvs postrouting rules"), "-j", chainPostrouting)},
		{"filter", "INPUT", append(c("switchyard ipvs service address filter"), "-j", chainFilter)},
		{"filter", "FORWARD", append(c("switchyard ipvs forwarding rules"), "-j", chainForward)},
	}
}

// renderRules returns the iptables-restore text of IPVS mode's chains for the options. It depends only
// on the options, never on the services.
func renderRules(o *Options) []byte {
	f := o.Family
	set := func(k setKind) string { return setName(f, k) }
	mark := o.masqMark()
	var b bytes.Buffer
	line := func(parts ...string) { b.WriteString(strings.Join(parts, " ")); b.WriteByte('\n') }

	line("*nat")
	for _, ch := range []string{chainServices, chainPostrouting, chainMarkMasq} {
		line(":" + ch + " - [0:0]")
	}
	// MARK in the form iptables-save prints (--or-mark M is --set-xmark M/M, --xor-mark M is
	// --set-xmark M/0x0), so that the rules as written are the rules as read back (ExpectedState).
	line("-A", chainMarkMasq, "-j MARK --set-xmark", mark+"/"+mark)
	line("-A", chainPostrouting, "-m comment --comment \"hairpin: a local endpoint reached itself\"",
		"-m set --match-set", set(setLoopBack), "dst,dst,src -j MASQUERADE")
	line("-A", chainPostrouting, "-m mark ! --mark", mark+"/"+mark, "-j RETURN")
	line("-A", chainPostrouting, "-j MARK --set-xmark", mark+"/0x0")
	masquerade := "-j MASQUERADE"
	if o.RandomFully {
		masquerade += " --random-fully"
	}
	line("-A", chainPostrouting, "-m comment --comment \"switchyard service traffic requiring SNAT\"", masquerade)

	clusterIPs := "-m set --match-set " + set(setClusterIP) + " dst,dst"
	switch notLocal := o.notLocal(); {
	case o.MasqueradeAll:
		line("-A", chainServices, clusterIPs, "-j", chainMarkMasq)
	case notLocal != nil:
		line(append(append([]string{"-A", chainServices}, notLocal...), clusterIPs, "-j", chainMarkMasq)...)
	}
	line("-A", chainServices, "-m set --match-set", set(setExternalIP), "dst,dst -j", chainMarkMasq)
	line("-A", chainServices, "-m set --match-set", set(setLoadBalancer), "dst,dst",
		"-m set ! --match-set", set(setLoadBalancerLocal), "dst,dst -j", chainMarkMasq)
	line("-A", chainServices, "-m set --match-set", set(setNodePort), "dst,dst -j", chainMarkMasq)
	// Service traffic needs no other NAT rule; accepting here keeps later nat rules off it.
	for _, k := range []setKind{setClusterIP, setExternalIP, setExternalIPLocal, setLoadBalancer, setNodePort, setNodePortLocal} {
		line("-A", chainServices, "-m set --match-set", set(k), "dst,dst -j ACCEPT")
	}
	line("COMMIT")

	line("*filter")
	for _, ch := range []string{chainFilter, chainForward} {
		line(":" + ch + " - [0:0]")
	}
	// One word, so unquoted, as iptables-save prints it.
	line("-A", chainFilter, "-m comment --comment loadBalancerSourceRanges",
		"-m set --match-set", set(setLoadBalancerFW), "dst,dst",
		"-m set ! --match-set", set(setLoadBalancerSourceCIDR), "dst,dst,src -j DROP")
	for _, k := range []setKind{setClusterIP, setExternalIP, setExternalIPLocal, setLoadBalancer} {
		line("-A", chainFilter, "-m set --match-set", set(k), "dst,dst -j RETURN")
	}
	reject := "icmp-port-unreachable"
	if f == model.IPv6 {
		reject = "icmp6-port-unreachable"
	}
	line("-A", chainFilter, "-m comment --comment \"no service on this port of a service address\"",
		"-m conntrack --ctstate NEW -m set --match-set", set(setIPVSIPs), "dst -j REJECT --reject-with", reject)
	line("-A", chainForward, "-m mark --mark", mark+"/"+mark, "-j ACCEPT")
	line("-A", chainForward, "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
	line("COMMIT")
	return b.Bytes()
}

// countRestore counts, per table, the rules in restore text plus the jump rules in built-in chains,
// and the chains the text declares.
func countRestore(text []byte) (rules, chains map[string]int) {
	rules, chains = map[string]int{}, map[string]int{}
	d, _ := utiliptables.ParseSave(text) // renderRules' own output, which parses
	for table, c := range d.Count() {
		rules[table] += c.Rules
		chains[table] += c.Chains
	}
	for _, j := range jumpRules() {
		rules[j.table]++
	}
	return rules, chains
}

// renderCleanupRules returns restore text that flushes and deletes the backend's chains. Declaring a
// chain creates it if missing, so the deletes succeed whatever is left.
func renderCleanupRules() []byte {
	var b bytes.Buffer
	for _, t := range []struct {
		table  string
		chains []string
	}{
		{"nat", []string{chainServices, chainPostrouting, chainMarkMasq}},
		{"filter", []string{chainFilter, chainForward}},
	} {
		fmt.Fprintf(&b, "*%s\n", t.table)
		for _, ch := range t.chains {
			fmt.Fprintf(&b, ":%s - [0:0]\n", ch)
		}
		for _, ch := range t.chains {
			fmt.Fprintf(&b, "-X %s\n", ch)
		}
		b.WriteString("COMMIT\n")
	}
	return b.Bytes()
}
