package main

import (
	"slices"
	"sort"
)

// The kube-proxy v1.37 feature gates that change what a proxy does, in the modes Switchyard has.
// Every other gate kube-proxy reads is locked on (PreferSameTrafficDistribution,
// MultiCIDRServiceAllocator), or belongs to a mode Switchyard lacks (KubeProxyNFTablesLocalhostNodePorts,
// nftables), so setting it changes nothing here.
const (
	// gateExternalIPs off: spec.externalIPs are not programmed (GA, default on).
	gateExternalIPs = "AllowServiceExternalIPs"
	// gateIPVS off: --proxy-mode=ipvs is refused (deprecated since v1.37, default on).
	gateIPVS = "KubeProxyIPVS"
)

var honouredGates = []string{gateExternalIPs, gateIPVS}

// gateOff reports whether --feature-gates (or featureGates in --config) turns the gate off.
func (o *Options) gateOff(name string) bool {
	on, set := o.FeatureGates[name]
	return set && !on
}

// ignoredGates are the gates set that Switchyard does not act on, sorted.
func (o *Options) ignoredGates() []string {
	var out []string
	for name := range o.FeatureGates {
		if !slices.Contains(honouredGates, name) {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}
