package main

import (
	"strconv"
	"strings"

	"k8s.io/klog/v2"

	"github.com/switchyard/switchyard/internal/nfacct"
	"github.com/switchyard/switchyard/internal/sysctl"
	"github.com/switchyard/switchyard/proxier/conntrack"
	"github.com/switchyard/switchyard/proxier/iptables"
)

// sysctlRouteLocalnet lets the kernel route packets to 127.0.0.0/8 that were DNATed elsewhere (or
// that arrive from the network) instead of dropping them as martians; localhost node ports need it.
const sysctlRouteLocalnet = "net/ipv4/conf/all/route_localnet"

// kernelFacts fills in what iptables mode takes from the node's kernel, as kube-proxy does before
// it builds its proxier: route_localnet for localhost node ports, and whether be_liberal is on.
//
// kube-proxy exits when it cannot set route_localnet. Switchyard goes on with localhost node ports
// off instead, so the rules never DNAT what the kernel would then drop, and says so: in the
// unprivileged DaemonSet /proc/sys is read-only, and the kernel-setup init container sets it.
func kernelFacts(opts *iptables.Options, sys sysctl.Interface) {
	if opts.LocalhostNodePortsEffective() {
		klog.InfoS("Setting route_localnet=1 so that NodePorts answer on 127.0.0.1; to avoid it, pass --iptables-localhost-nodeports=false or --nodeport-addresses without 127.0.0.1")
		if err := ensureSysctl(sys, sysctlRouteLocalnet, "1"); err != nil {
			klog.ErrorS(err, "Cannot set route_localnet=1; NodePorts will not answer on 127.0.0.1. Set net.ipv4.conf.all.route_localnet=1 on the node (the kernel-setup init container does), or pass --iptables-localhost-nodeports=false")
			opts.LocalhostNodePorts = false
		}
	}
	for _, p := range opts.LoopbackNodePortAddressesIgnored() {
		klog.ErrorS(nil, "--nodeport-addresses includes localhost but localhost NodePorts are off; ignoring it", "address", p)
	}
	// As kube-proxy: a value that cannot be read counts as off, which keeps the INVALID drop.
	if v, err := sys.Get(conntrack.SysctlTCPBeLiberal); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n != 0 {
			opts.ConntrackTCPLiberal = true
			klog.InfoS("nf_conntrack_tcp_be_liberal is on; not dropping packets conntrack calls INVALID")
		}
	}
}

// ensureSysctl sets name to value unless it holds it already, so that a read-only /proc/sys
// where someone else set it is no error.
func ensureSysctl(sys sysctl.Interface, name, value string) error {
	if cur, err := sys.Get(name); err == nil && strings.TrimSpace(cur) == value {
		return nil
	}
	if err := sys.Set(name, value); err != nil {
		return err
	}
	klog.V(1).InfoS("Changed sysctl", "name", name, "value", value)
	return nil
}

// openNFAcct opens the nfacct counters of the node's network namespace (for user, which the log
// names), or returns nil after saying why: the proxy works without them, less two metrics.
func openNFAcct(user string) nfacct.Interface {
	acct, err := nfacct.New()
	if err != nil {
		klog.ErrorS(err, "nfacct is not available; kube-proxy's two nfacct metrics will not be reported", "for", user)
		return nil
	}
	return acct
}
