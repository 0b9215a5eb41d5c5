package main

import (
	"fmt"
	"io"

	mobyipvs "github.com/moby/ipvs"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/switchyard/switchyard/proxier/explain"
	"github.com/switchyard/switchyard/proxier/iptables"
	"github.com/switchyard/switchyard/proxier/ipvs"
	"github.com/switchyard/switchyard/proxier/model"
)

// The walkers, one per mode, and the report's writers.

// walk explains pkt with the walker of live.Mode.
func walk(live *explain.Live, pkt explain.Packet) (*explain.Report, error) {
	switch live.Mode {
	case "iptables":
		return iptables.Explain(live, pkt)
	case "ipvs":
		return ipvs.Explain(live, pkt)
	}
	return nil, fmt.Errorf("explaining %s mode is not built yet", live.Mode)
}

// hostIPVS reads IPVS mode's live state in this network namespace, through the backend's own
// seams: the kernel's virtual servers and the backend's ipsets of the family.
func hostIPVS(family model.IPFamily) ([]explain.VirtualServer, string, error) {
	h, err := mobyipvs.New("")
	if err != nil {
		return nil, "", fmt.Errorf("open IPVS netlink socket (is the ip_vs module loaded?): %w", err)
	}
	defer h.Close()
	vss, err := ipvs.LiveVirtualServers(h)
	if err != nil {
		return nil, "", err
	}
	nl, err := netlink.NewHandle(unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, "", fmt.Errorf("open netlink handle: %w", err)
	}
	defer nl.Close()
	sets, err := ipvs.LiveIPSets(nl, family)
	if err != nil {
		return nil, "", err
	}
	return vss, sets, nil
}

// writeExplainReport writes rep as --output asks.
func writeExplainReport(w io.Writer, rep *explain.Report, format string) error {
	if format == "json" {
		return explain.WriteJSON(w, rep)
	}
	return explain.WriteText(w, rep)
}
