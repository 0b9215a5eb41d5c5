package main

import (
	"fmt"
	"io"
	"os/exec"
	"sort"
	"strings"
	"time"

	"github.com/switchyard/switchyard/e2e/framework/cluster"
)

// printReport prints the readable report: per request, who answered and which client address it
// saw, each check's verdict, the health checks, the rule counts and how to switch --proxy-mode.
func printReport(w io.Writer, r *results, upTook, demoTook time.Duration) {
	fmt.Fprintf(w, "\n======== Switchyard demo report ========\n")
	fmt.Fprintf(w, "%d nodes (network namespaces on one underlay), switchyard --proxy-mode=%s --pod-network=vxlan in each\n",
		r.nodes, r.proxyMode)
	if r.env != nil {
		fmt.Fprintf(w, "pods: %s\n", r.env.podList())
	}
	for i, g := range r.groups {
		fmt.Fprintf(w, "\n%d. %s\n   %s\n", i+1, g.title, g.why)
		for j, row := range g.rows {
			fmt.Fprintf(w, "   %2d  %s\n", j+1, r.describe(row))
		}
		if s := spread(g); s != "" {
			fmt.Fprintf(w, "   answers: %s\n", s)
		}
	}
	if len(r.health) > 0 {
		fmt.Fprintf(w, "\nHealth check node port of %s/%s (what a cloud load balancer asks each node):\n", demoNamespace, svcLocal)
		for _, h := range r.health {
			verdict := "ok  "
			if h.err != nil {
				verdict = "FAIL"
			}
			detail := fmt.Sprintf("HTTP %d, localEndpoints=%d", h.status, h.local)
			if h.err != nil {
				detail += " (" + h.err.Error() + ")"
			}
			fmt.Fprintf(w, "   %s %s: %s\n", verdict, h.node, detail)
		}
	}
	printExplained(w, r.explained)
	printRules(w, r)
	verdict := "PASS"
	if r.failures() > 0 {
		verdict = fmt.Sprintf("FAIL (%d of %d checks)", r.failures(), r.checks())
	}
	fmt.Fprintf(w, "\nResult: %s, %d checks. The cluster was ready after %s (bring-up, or waiting for its lock);\n"+
		"pods, services, requests and checks took %s.\n", verdict, r.checks(), upTook.Round(time.Second), demoTook.Round(time.Second))
}

// describe is one request's line.
func (r *results) describe(row row) string {
	verdict := "ok  "
	if !row.ok {
		verdict = "FAIL"
	}
	var s string
	switch {
	case row.err != nil && row.ok:
		s = "no answer within the probe's timeout"
	case row.err != nil:
		s = "no answer (" + shorten(row.err.Error()) + ")"
	default:
		s = fmt.Sprintf("answered by %-13s on %s, saw client %s", row.ans.Pod, r.env.nodeOf(row.ans.Pod), row.ans.Client)
		if name := r.env.addrName[row.ans.ClientIP()]; name != "" {
			s += " = " + name
		}
	}
	if row.note != "" {
		s += ": " + row.note
	}
	return verdict + "  " + s
}

func shorten(s string) string {
	if len(s) > 100 {
		return s[:100] + "..."
	}
	return s
}

// spread summarises which pods answered a group.
func spread(g *group) string {
	count := map[string]int{}
	for _, row := range g.rows {
		if row.err == nil {
			count[row.ans.Pod]++
		}
	}
	if len(count) == 0 {
		return ""
	}
	var pods []string
	for p := range count {
		pods = append(pods, p)
	}
	sort.Strings(pods)
	parts := make([]string, 0, len(pods))
	for _, p := range pods {
		parts = append(parts, fmt.Sprintf("%s x%d", p, count[p]))
	}
	return strings.Join(parts, ", ")
}

func (e *env) nodeOf(pod string) string {
	if i, ok := e.podNode[pod]; ok {
		return e.c.Node(i).Name
	}
	return "?"
}

func (e *env) podList() string {
	parts := make([]string, 0, len(demoPods))
	for _, dp := range demoPods {
		k := podKey(dp.Name)
		parts = append(parts, fmt.Sprintf("%s %s on %s", k, e.podIP[k], e.c.Node(dp.Node).Name))
	}
	return strings.Join(parts, ", ")
}

// printRules prints the rule counts of the mode that ran and how to run the other one.
func printRules(w io.Writer, r *results) {
	if len(r.rules) > 0 {
		fmt.Fprintf(w, "\nRules, --proxy-mode=%s (every service of the cluster, the API server's own included):\n", r.proxyMode)
		for _, n := range r.rules {
			fmt.Fprintf(w, "   %s: %s shows %d SY- rules (%s) in %d chains", n.node, n.saver, total(n.rules), perTable(n.rules), n.chains)
			if len(n.metrics) > 0 {
				fmt.Fprintf(w, "; kubeproxy_sync_proxy_rules_iptables_total: nat %s, filter %s", n.metrics["nat"], n.metrics["filter"])
			}
			if n.err != nil {
				fmt.Fprintf(w, " (%v)", n.err)
			}
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "   (the metric counts the rules in the proxier's own chains; the dump adds the jumps from the built-in\n"+
			"   chains and the pod network's SY-POD- rules. Per node, not per service: a node renders what it alone needs.)\n")
	}
	v := r.ipvs
	if v.node == "" {
		return
	}
	fmt.Fprintf(w, "\nSwitching --proxy-mode:\n")
	fmt.Fprintf(w, "   hack/local-up.sh --proxy-mode ipvs    starts every node's switchyard with --proxy-mode=ipvs (iptables is the default)\n")
	if v.kernelHasIPVS {
		fmt.Fprintf(w, "   this kernel has IPVS, so that runs here; the demo itself uses iptables mode\n")
	} else {
		fmt.Fprintf(w, "   IPVS mode needs a kernel with ip_vs; this one has none (no /proc/net/ip_vs), and switchyard refuses\n"+
			"   to start in ipvs mode without it. `make test-ipvs` runs the IPVS backend against a real kernel in a qemu VM.\n")
	}
	if v.err != nil {
		fmt.Fprintf(w, "   (could not render the services for IPVS mode: %v)\n", v.err)
		return
	}
	fmt.Fprintf(w, "   IPVS mode for the same services on %s, computed by switchyard's IPVS backend (its watcher and sync,\n"+
		"   applied to its stateful fakes, not to a kernel): %d virtual servers, %d real servers, %d addresses on\n"+
		"   kube-ipvs0, %d ipset entries, %d iptables rules (constant: IPVS does the per-service work)\n",
		v.node, v.virtualServers, v.realServers, v.dummyAddrs, v.ipsetEntries, v.iptablesRules)
}

// printExplore says how to look around a kept cluster.
func printExplore(w io.Writer, c *cluster.Cluster) {
	fmt.Fprintf(w, "\nThe cluster keeps running (--keep). To explore:\n")
	fmt.Fprintf(w, "   export KUBECONFIG=%s   (the admin kubeconfig)\n", c.Kubeconfig)
	if _, err := exec.LookPath("kubectl"); err == nil {
		fmt.Fprintf(w, "   kubectl get nodes,pods,services,endpointslices -n %s -o wide\n", demoNamespace)
	}
	fmt.Fprintf(w, "   ip netns exec sy-node-1 iptables-save | grep SY-      Switchyard's rules on node 1\n")
	fmt.Fprintf(w, "   ip netns exec sy-node-1 curl -s 127.0.0.1:10249/metrics | grep kubeproxy_sync_proxy_rules_iptables_total\n")
	fmt.Fprintf(w, "   ip netns exec %s bash    a shell in the underlay (nodes are %s..): curl NODE_IP:NODE_PORT\n",
		c.Underlay, c.Node(1).IP)
	fmt.Fprintf(w, "   ip netns exec %s bash    a shell in the client pod\n", cluster.PodNetNS(demoNamespace, clientPod))
	fmt.Fprintf(w, "   ls %s/logs/    every process's log\n", c.State)
	fmt.Fprintf(w, "   hack/demo.sh          runs the demo again on this cluster (and leaves it up)\n")
	fmt.Fprintf(w, "   hack/local-down.sh    removes everything\n")
}
