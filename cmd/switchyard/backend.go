package main

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"

	"k8s.io/klog/v2"

	"github.com/switchyard/switchyard/proxier"
	"github.com/switchyard/switchyard/proxier/conntrack"
	"github.com/switchyard/switchyard/proxier/iptables"
	"github.com/switchyard/switchyard/proxier/ipvs"
)

// hostIptables opens the node's iptables of the variant kubelet uses (or the one --iptables-variant
// names), for the IPv4 family.
func hostIptables(o *Options) (*iptables.Real, error) {
	override := iptables.Variant("")
	if o.IptablesVariant != "auto" {
		override = iptables.Variant(o.IptablesVariant)
	}
	variant, err := iptables.DetectVariant(override, iptables.HostSave)
	if err != nil {
		return nil, err
	}
	ipt, err := iptables.NewReal(proxier.IPv4, variant)
	if err != nil {
		return nil, fmt.Errorf("iptables (%s): %w", variant, err)
	}
	klog.InfoS("Using iptables", "variant", variant, "ipFamily", proxier.IPv4)
	return ipt, nil
}

// newBackend builds the backend --proxy-mode asks for, for IPv4.
func newBackend(o *Options) (proxier.Backend, error) {
	clusterCIDRs, _ := o.ClusterCIDRs()
	nodePortCIDRs, _, _ := o.NodePortPrefixes()
	ipt, err := hostIptables(o)
	if err != nil {
		return nil, err
	}
	switch o.ProxyMode {
	case "iptables":
		opts := iptables.DefaultOptions(proxier.IPv4)
		opts.LocalDetector = iptables.LocalDetector{ClusterCIDRs: clusterCIDRs, UseNodeCIDR: o.DetectLocalMode == "NodeCIDR"}
		opts.MasqueradeAll = o.MasqueradeAll
		opts.MasqueradeBit = int(o.MasqueradeBit)
		opts.NodePortAddresses = nodePortCIDRs
		opts.RandomFully = ipt.HasRandomFully()
		return iptables.NewProxier(iptables.Config{Options: opts, IPTables: ipt, Conntrack: &conntrack.Netlink{}})
	case "ipvs":
		opts := ipvs.DefaultOptions()
		opts.SyncPeriod, opts.MinSyncPeriod = o.IPVS.SyncPeriod, o.IPVS.MinSyncPeriod
		opts.Scheduler, opts.StrictARP = o.IPVS.Scheduler, o.IPVS.StrictARP
		opts.TCPTimeout, opts.TCPFinTimeout, opts.UDPTimeout = o.IPVS.TCPTimeout, o.IPVS.TCPFinTimeout, o.IPVS.UDPTimeout
		opts.ExcludeCIDRs, _ = parsePrefixes("--ipvs-exclude-cidrs", o.IPVS.ExcludeCIDRs)
		opts.NodePortAddresses = nodePortCIDRs
		opts.ClusterCIDRs = clusterCIDRs
		opts.MasqueradeAll = o.MasqueradeAll
		opts.MasqueradeBit = int(o.MasqueradeBit)
		return ipvs.NewHost(opts, ipt)
	}
	return nil, fmt.Errorf("unknown --proxy-mode %q", o.ProxyMode)
}

// cleanupAll is --cleanup: it removes what every mode of Switchyard installed, in both iptables
// variants. IPVS state is only looked for where the kernel has IPVS.
func cleanupAll(o *Options) error {
	var errs []error
	if err := iptables.CleanupHost(); err != nil {
		errs = append(errs, err)
	}
	if err := ipvs.CheckKernel(netlink.GenlFamilyGet, nil); err != nil {
		klog.InfoS("No IPVS in this kernel, so no IPVS state to clean up")
		return errors.Join(errs...)
	}
	ipt, err := hostIptables(o)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	p, err := ipvs.NewHost(ipvs.DefaultOptions(), ipt)
	if err == nil {
		err = p.Cleanup()
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("ipvs: %w", err))
	}
	return errors.Join(errs...)
}
