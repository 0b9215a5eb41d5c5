package cni

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/switchyard/switchyard/podnet/ipam"
	"github.com/switchyard/switchyard/podnet/subnet"
)

// HostVethName is the node-side name of a pod's veth: derived from container ID and interface, so
// that DEL finds it even when the pod's network namespace is already gone.
func HostVethName(containerID, ifname string) string {
	sum := sha256.Sum256([]byte(containerID + "/" + ifname))
	return "sy" + hex.EncodeToString(sum[:])[:11]
}

func cniErr(code uint, msg string, err error) error {
	details := ""
	if err != nil {
		details = err.Error()
	}
	return types.NewError(code, msg, details)
}

// parseArgs parses the network configuration on stdin and checks the CNI_* arguments every command
// needs (and CNI_NETNS when needNetns).
func parseArgs(args *skel.CmdArgs, needNetns bool) (*NetConf, error) {
	conf, err := ParseConf(args.StdinData)
	if err != nil {
		return nil, err
	}
	if err := checkArgs(args, needNetns); err != nil {
		return nil, err
	}
	return conf, nil
}

func checkArgs(args *skel.CmdArgs, needNetns bool) error {
	if args.ContainerID == "" {
		return cniErr(types.ErrInvalidEnvironmentVariables, "CNI_CONTAINERID is empty", nil)
	}
	if !validIfName(args.IfName) {
		return cniErr(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("CNI_IFNAME %q is not a valid interface name", args.IfName), nil)
	}
	if needNetns && args.Netns == "" {
		return cniErr(types.ErrInvalidEnvironmentVariables, "CNI_NETNS is empty", nil)
	}
	return nil
}

// Add is CNI ADD. Anything it creates before a failure is removed again: the host veth (and with it
// the pod end) and the address reservation. Only the shared bridge stays.
func Add(args *skel.CmdArgs) error {
	conf, err := parseArgs(args, true)
	if err != nil {
		return err
	}
	info, err := subnet.Read(conf.SubnetFile)
	if errors.Is(err, subnet.ErrNotFound) {
		return cniErr(types.ErrTryAgainLater, fmt.Sprintf("subnet file %s does not exist: the switchyard daemon has not "+
			"written it yet (is it running with --pod-network=vxlan, and does the node have a podCIDR?)", conf.SubnetFile), err)
	}
	if err != nil {
		return cniErr(types.ErrInvalidNetworkConfig, "subnet file is invalid", err)
	}
	mtu := info.MTU
	if conf.MTU != 0 {
		mtu = conf.MTU
	}
	podNS, pod, err := openPodNetns(args.Netns)
	if err != nil {
		return err
	}
	defer podNS.Close()
	defer pod.Close()
	host, err := netlink.NewHandle()
	if err != nil {
		return cniErr(types.ErrInternal, "netlink in the node namespace", err)
	}
	defer host.Close()

	if _, err := pod.LinkByName(args.IfName); err == nil {
		return cniErr(types.ErrInternal, fmt.Sprintf("interface %s already exists in %s", args.IfName, args.Netns), nil)
	}
	gw := ipam.Gateway(info.Subnet)
	prefix, _ := info.Subnet.Mask.Size()
	br, err := ensureBridge(host, conf.Bridge, &net.IPNet{IP: gw, Mask: info.Subnet.Mask}, mtu)
	if err != nil {
		return cniErr(types.ErrInternal, fmt.Sprintf("bridge %s", conf.Bridge), err)
	}
	store, err := ipam.Open(conf.DataDir, conf.Name)
	if err != nil {
		return cniErr(types.ErrIOFailure, "ipam store", err)
	}
	ip, err := store.Allocate(info.Subnet, args.ContainerID, args.IfName)
	if errors.Is(err, ipam.ErrPoolFull) {
		return cniErr(types.ErrTryAgainLater, fmt.Sprintf("pod CIDR %s of this node is full", info.Subnet), err)
	}
	if err != nil {
		return cniErr(types.ErrIOFailure, "allocate pod address", err)
	}
	hostName := HostVethName(args.ContainerID, args.IfName)
	result, createdVeth, err := attach(host, pod, podNS, br, args, hostName, &net.IPNet{IP: ip, Mask: net.CIDRMask(prefix, 32)}, gw, mtu, conf.Hairpin())
	if err != nil {
		// Undo in reverse: the veth if this ADD made it (deleting one end removes both; a link that
		// merely has the same name is not ours), then the reservation.
		if createdVeth {
			if l, lerr := host.LinkByName(hostName); lerr == nil {
				_ = host.LinkDel(l)
			}
		}
		_, _ = store.Release(args.ContainerID, args.IfName)
		return cniErr(types.ErrInternal, "connect pod", err)
	}
	result.CNIVersion = types100.ImplementedSpecVersion
	return types.PrintResult(result, conf.CNIVersion)
}

// openPodNetns opens the pod's network namespace (CNI_NETNS) and a netlink handle inside it; the
// caller closes both. Its errors are CNI errors, ready to return.
func openPodNetns(path string) (netns.NsHandle, *netlink.Handle, error) {
	podNS, err := netns.GetFromPath(path)
	if err != nil {
		return 0, nil, cniErr(types.ErrInvalidNetNS, fmt.Sprintf("cannot open network namespace %s", path), err)
	}
	pod, err := netlink.NewHandleAt(podNS)
	if err != nil {
		podNS.Close()
		return 0, nil, cniErr(types.ErrInvalidNetNS, "netlink in the pod namespace", err)
	}
	return podNS, pod, nil
}

func attach(host, pod *netlink.Handle, podNS netns.NsHandle, br netlink.Link, args *skel.CmdArgs, hostName string,
	addr *net.IPNet, gw net.IP, mtu int, hairpin bool) (_ *types100.Result, createdVeth bool, err error) {
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: hostName, MTU: mtu},
		PeerName:      args.IfName,
		PeerNamespace: netlink.NsFd(int(podNS)),
	}
	if err := host.LinkAdd(veth); err != nil {
		return nil, false, fmt.Errorf("create veth %s/%s: %w", hostName, args.IfName, err)
	}
	hostLink, err := host.LinkByName(hostName)
	if err != nil {
		return nil, true, fmt.Errorf("find host veth %s: %w", hostName, err)
	}
	if err := host.LinkSetMaster(hostLink, br); err != nil {
		return nil, true, fmt.Errorf("attach %s to %s: %w", hostName, br.Attrs().Name, err)
	}
	if err := host.LinkSetHairpin(hostLink, hairpin); err != nil {
		return nil, true, fmt.Errorf("hairpin on %s: %w", hostName, err)
	}
	if err := host.LinkSetUp(hostLink); err != nil {
		return nil, true, fmt.Errorf("bring up %s: %w", hostName, err)
	}
	podLink, err := pod.LinkByName(args.IfName)
	if err != nil {
		return nil, true, fmt.Errorf("find %s in pod: %w", args.IfName, err)
	}
	if err := pod.AddrAdd(podLink, &netlink.Addr{IPNet: addr}); err != nil {
		return nil, true, fmt.Errorf("address %s on %s: %w", addr, args.IfName, err)
	}
	if err := pod.LinkSetUp(podLink); err != nil {
		return nil, true, fmt.Errorf("bring up %s: %w", args.IfName, err)
	}
	if err := pod.RouteReplace(&netlink.Route{LinkIndex: podLink.Attrs().Index, Gw: gw,
		Dst: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}}); err != nil {
		return nil, true, fmt.Errorf("default route via %s: %w", gw, err)
	}
	podIdx := 2
	return &types100.Result{
		Interfaces: []*types100.Interface{
			{Name: br.Attrs().Name, Mac: br.Attrs().HardwareAddr.String()},
			{Name: hostName, Mac: hostLink.Attrs().HardwareAddr.String()},
			{Name: args.IfName, Mac: podLink.Attrs().HardwareAddr.String(), Sandbox: args.Netns},
		},
		IPs:    []*types100.IPConfig{{Address: *addr, Gateway: gw, Interface: &podIdx}},
		Routes: []*types.Route{{Dst: net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, GW: gw}},
	}, true, nil
}

// ensureBridge returns the pod bridge, creating it if missing, holding gateway as its only IPv4
// address, with the pod MTU, and up.
func ensureBridge(h *netlink.Handle, name string, gateway *net.IPNet, mtu int) (netlink.Link, error) {
	l, err := h.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) {
			return nil, err
		}
		// The MAC is set explicitly: a bridge without one takes the lowest MAC of its ports and changes
		// it when that port leaves, which strands every pod's ARP entry for the gateway.
		err = h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu, HardwareAddr: bridgeMAC(name)}})
		if err != nil && !errors.Is(err, unix.EEXIST) { // EEXIST: a concurrent ADD made it first
			return nil, fmt.Errorf("create: %w", err)
		}
		if l, err = h.LinkByName(name); err != nil {
			return nil, err
		}
	}
	if _, ok := l.(*netlink.Bridge); !ok {
		return nil, fmt.Errorf("%s exists but is a %s, not a bridge", name, l.Type())
	}
	addrs, err := h.AddrList(l, unix.AF_INET)
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	have := false
	for _, a := range addrs {
		if a.IPNet.String() == gateway.String() {
			have = true
			continue
		}
		// A different address means the node's pod CIDR changed; the old gateway must go.
		a := a
		if err := h.AddrDel(l, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return nil, fmt.Errorf("remove old address %s: %w", a.IPNet, err)
		}
	}
	if !have {
		if err := h.AddrAdd(l, &netlink.Addr{IPNet: gateway}); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("add gateway %s: %w", gateway, err)
		}
	}
	if l.Attrs().MTU != mtu {
		if err := h.LinkSetMTU(l, mtu); err != nil {
			return nil, fmt.Errorf("set mtu %d: %w", mtu, err)
		}
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(l); err != nil {
			return nil, fmt.Errorf("bring up: %w", err)
		}
	}
	return l, nil
}

// bridgeMAC is a locally administered unicast MAC derived from the bridge name.
func bridgeMAC(name string) net.HardwareAddr {
	sum := sha256.Sum256([]byte("switchyard-bridge/" + name))
	mac := net.HardwareAddr(sum[:6])
	mac[0] = (mac[0] | 0x02) &^ 0x01
	return mac
}

// Del is CNI DEL: it releases the address and removes the veth. Everything already gone is fine, and
// a missing subnet file or pod namespace does not stop it.
func Del(args *skel.CmdArgs) error {
	conf, err := parseArgs(args, false)
	if err != nil {
		return err
	}
	store, err := ipam.Open(conf.DataDir, conf.Name)
	if err != nil {
		return cniErr(types.ErrIOFailure, "ipam store", err)
	}
	if _, err := store.Release(args.ContainerID, args.IfName); err != nil {
		return cniErr(types.ErrIOFailure, "release pod address", err)
	}
	host, err := netlink.NewHandle()
	if err != nil {
		return cniErr(types.ErrInternal, "netlink in the node namespace", err)
	}
	defer host.Close()
	l, err := host.LinkByName(HostVethName(args.ContainerID, args.IfName))
	if err == nil {
		if err := host.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
			return cniErr(types.ErrInternal, "delete host veth", err)
		}
	}
	return nil
}

// Check is CNI CHECK: the pod interface must exist with the address the store recorded, and the host
// veth must be attached to the bridge.
func Check(args *skel.CmdArgs) error {
	conf, err := parseArgs(args, true)
	if err != nil {
		return err
	}
	if conf.PrevResult == nil {
		return cniErr(types.ErrInvalidNetworkConfig, "CHECK needs prevResult", nil)
	}
	store, err := ipam.Open(conf.DataDir, conf.Name)
	if err != nil {
		return cniErr(types.ErrIOFailure, "ipam store", err)
	}
	ip, err := store.Lookup(args.ContainerID, args.IfName)
	if err != nil {
		return cniErr(types.ErrIOFailure, "look up pod address", err)
	}
	if ip == nil {
		return cniErr(types.ErrInternal, fmt.Sprintf("no address recorded for %s/%s", args.ContainerID, args.IfName), nil)
	}
	podNS, pod, err := openPodNetns(args.Netns)
	if err != nil {
		return err
	}
	defer podNS.Close()
	defer pod.Close()
	podLink, err := pod.LinkByName(args.IfName)
	if err != nil {
		return cniErr(types.ErrInternal, fmt.Sprintf("%s missing in the pod", args.IfName), err)
	}
	addrs, err := pod.AddrList(podLink, unix.AF_INET)
	if err != nil {
		return cniErr(types.ErrInternal, "list pod addresses", err)
	}
	found := false
	for _, a := range addrs {
		found = found || a.IP.Equal(ip)
	}
	if !found {
		return cniErr(types.ErrInternal, fmt.Sprintf("%s in the pod lacks its address %s", args.IfName, ip), nil)
	}
	host, err := netlink.NewHandle()
	if err != nil {
		return cniErr(types.ErrInternal, "netlink in the node namespace", err)
	}
	defer host.Close()
	hostLink, err := host.LinkByName(HostVethName(args.ContainerID, args.IfName))
	if err != nil {
		return cniErr(types.ErrInternal, "host veth missing", err)
	}
	br, err := host.LinkByName(conf.Bridge)
	if err != nil || hostLink.Attrs().MasterIndex != br.Attrs().Index {
		return cniErr(types.ErrInternal, fmt.Sprintf("host veth %s is not attached to %s", hostLink.Attrs().Name, conf.Bridge), err)
	}
	return nil
}
