package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os/exec"
	"time"

	mobyipvs "github.com/moby/ipvs"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	utiliptables "github.com/switchyard/switchyard/internal/iptables"
	"github.com/switchyard/switchyard/proxier/conntrack"
	"github.com/switchyard/switchyard/proxier/explain"
	"github.com/switchyard/switchyard/proxier/ipvs"
	"github.com/switchyard/switchyard/proxier/model"
)

// debugTimeout bounds each request to the daemon's debug endpoints.
const debugTimeout = 10 * time.Second

// hostSources reads this node (the network namespace the command runs in) and the daemon at
// metricsAddress.
func hostSources(metricsAddress string, pkt explain.Packet) liveSources {
	return liveSources{
		saveIptables:       hostIptablesSave,
		ipvs:               hostIPVS,
		hasIPVSDevice:      func() bool { _, err := netlink.LinkByName(ipvs.DummyDevice); return err == nil },
		localAddrs:         hostLocalAddrs,
		route:              hostRoute,
		conntrack:          &conntrack.Netlink{},
		fetchModel:         func() (*model.DebugModel, error) { return fetchDebugModel(metricsAddress, pkt) },
		fetchExpectedRules: func() ([]byte, error) { return fetchDebug(metricsAddress, debugRulesPath) },
	}
}

// hostIptablesSave is iptables-save of the family, every table, from the variant the daemon would
// pick (utiliptables.DetectVariant over both families' tables, as utiliptables.HostSave gives
// them). Each save runs once: the variant's own output, read for the detection, is the answer. On a
// 10k-service node one iptables-nft-save costs a few hundred milliseconds.
func hostIptablesSave(family model.IPFamily) ([]byte, error) {
	saved := map[string][]byte{}
	run := func(bin string) ([]byte, error) {
		if out, ok := saved[bin]; ok {
			return out, nil
		}
		out, err := exec.Command(bin).Output()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", bin, err)
		}
		saved[bin] = out
		return out, nil
	}
	bin := func(f model.IPFamily, v utiliptables.Variant) string {
		if f == model.IPv6 {
			return "ip6tables-" + string(v) + "-save"
		}
		return "iptables-" + string(v) + "-save"
	}
	variant, err := utiliptables.DetectVariant(utiliptables.VariantDefault, func(v utiliptables.Variant) (string, error) {
		var all []byte
		var firstErr error
		for _, f := range []model.IPFamily{model.IPv4, model.IPv6} {
			out, err := run(bin(f, v))
			if err != nil && firstErr == nil {
				firstErr = err
			}
			all = append(all, out...)
		}
		if len(all) == 0 && firstErr != nil {
			return "", firstErr
		}
		return string(all), nil
	})
	if err != nil {
		return nil, err
	}
	return run(bin(family, variant))
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

// hostLocalAddrs lists the addresses of the family on every interface of this namespace.
func hostLocalAddrs(family model.IPFamily) (map[netip.Addr]string, error) {
	fam := netlink.FAMILY_V4
	if family == model.IPv6 {
		fam = netlink.FAMILY_V6
	}
	addrs, err := netlink.AddrList(nil, fam)
	if err != nil {
		return nil, err
	}
	names := map[int]string{}
	out := map[netip.Addr]string{}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		if _, seen := names[a.LinkIndex]; !seen {
			if l, err := netlink.LinkByIndex(a.LinkIndex); err == nil {
				names[a.LinkIndex] = l.Attrs().Name
			}
		}
		out[ip.Unmap()] = names[a.LinkIndex]
	}
	return out, nil
}

// hostRoute asks the kernel for its route to dst (`ip route get`), and finds the route of the main
// table that matched, for its prefix and protocol.
func hostRoute(dst netip.Addr) (routeFacts, error) {
	f := routeFacts{Dst: dst}
	routes, err := netlink.RouteGet(net.IP(dst.AsSlice()))
	if err != nil {
		return f, err
	}
	if len(routes) == 0 {
		return f, fmt.Errorf("no route to %s", dst)
	}
	r := routes[0]
	f.Local = r.Type == unix.RTN_LOCAL
	if gw, ok := netip.AddrFromSlice(r.Gw); ok {
		f.Gateway = gw.Unmap()
	}
	if src, ok := netip.AddrFromSlice(r.Src); ok {
		f.Src = src.Unmap()
	}
	if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil {
		f.Device, f.DeviceType = l.Attrs().Name, l.Type()
	}
	if f.Local {
		return f, nil
	}
	// The matched route itself: the longest prefix of the main table holding dst.
	fam := netlink.FAMILY_V4
	if dst.Is6() {
		fam = netlink.FAMILY_V6
	}
	all, err := netlink.RouteListFiltered(fam, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return f, nil // the kind is then guessed from the device alone
	}
	best := -1
	for _, rt := range all {
		p := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		if dst.Is6() {
			p = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
		if rt.Dst != nil {
			a, _ := netip.AddrFromSlice(rt.Dst.IP)
			ones, _ := rt.Dst.Mask.Size()
			p = netip.PrefixFrom(a.Unmap(), ones)
		}
		if p.Contains(dst) && p.Bits() > best {
			best, f.Prefix, f.BGP = p.Bits(), p, rt.Protocol == unix.RTPROT_BGP
		}
	}
	return f, nil
}

// fetchDebugModel reads the daemon's /debug/model: only the service ports pkt is addressed to, or,
// without a destination (--check), none: only the node and the syncs.
func fetchDebugModel(addr string, pkt explain.Packet) (*model.DebugModel, error) {
	query := url.Values{"services": {"none"}}
	if pkt.Dst.IsValid() {
		query = url.Values{"dst": {pkt.Dst.String()}, "protocol": {pkt.Proto}}
	}
	path := debugModelPath + "?" + query.Encode()
	body, err := fetchDebug(addr, path)
	if err != nil {
		return nil, err
	}
	var m model.DebugModel
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", debugModelPath, err)
	}
	return &m, nil
}

// fetchDebug GETs one of the daemon's debug endpoints.
func fetchDebug(addr, path string) ([]byte, error) {
	client := http.Client{Timeout: debugTimeout}
	resp, err := client.Get("http://" + addr + path)
	if err != nil {
		return nil, fmt.Errorf("ask the daemon (is it running, with --metrics-bind-address %s?): %w", addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s: %s", path, resp.Status, body)
	}
	return body, nil
}
