package vxlan

import (
	"bytes"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// DeviceSpec is how this node's VXLAN device must look.
type DeviceSpec struct {
	Name          string
	VNI           int
	Port          int
	UnderlayIndex int
	UnderlayIP    net.IP
	// MTU is the underlay MTU minus the 50 bytes of VXLAN, UDP, IP and inner Ethernet headers.
	MTU int
	// MAC is used only when the device does not exist yet; an existing device keeps its MAC, also
	// when it has to be recreated, so that peers' entries stay valid.
	MAC net.HardwareAddr
	// Address is the node's VTEP IP; the device holds it as a /32.
	Address net.IP
}

// EnsureDevice makes the VXLAN device match spec: it creates it if missing, recreates it (keeping
// its MAC) if its VNI, port, underlay or learning setting is wrong, fixes its MTU, sets the /32
// address and brings it up. It returns the device as the kernel now reports it.
func EnsureDevice(nl Netlink, spec DeviceSpec) (*netlink.Vxlan, error) {
	if spec.Address.To4() == nil {
		return nil, fmt.Errorf("vxlan device %s: address %q is not IPv4", spec.Name, spec.Address)
	}
	mac := spec.MAC
	existing, err := nl.LinkByName(spec.Name)
	switch {
	case err == nil:
		vx, ok := existing.(*netlink.Vxlan)
		if ok && vxlanMatches(vx, spec) {
			break
		}
		if len(existing.Attrs().HardwareAddr) == 6 {
			mac = existing.Attrs().HardwareAddr
		}
		klog.InfoS("Recreating VXLAN device with wrong settings", "device", spec.Name, "type", existing.Type())
		if err := nl.LinkDel(existing); err != nil && !isGone(err) {
			return nil, fmt.Errorf("delete misconfigured vxlan device %s: %w", spec.Name, err)
		}
		existing = nil
	case IsLinkNotFound(err):
		existing = nil
	default:
		return nil, fmt.Errorf("look up vxlan device %s: %w", spec.Name, err)
	}
	if existing == nil {
		dev := &netlink.Vxlan{
			LinkAttrs:    netlink.LinkAttrs{Name: spec.Name, MTU: spec.MTU, HardwareAddr: mac},
			VxlanId:      spec.VNI,
			VtepDevIndex: spec.UnderlayIndex,
			SrcAddr:      spec.UnderlayIP.To4(),
			Port:         spec.Port,
			Learning:     false,
		}
		if err := nl.LinkAdd(dev); err != nil {
			return nil, fmt.Errorf("create vxlan device %s (vni %d, port %d): %w", spec.Name, spec.VNI, spec.Port, err)
		}
		klog.InfoS("Created VXLAN device", "device", spec.Name, "vni", spec.VNI, "port", spec.Port, "mac", mac.String(), "mtu", spec.MTU)
		if existing, err = nl.LinkByName(spec.Name); err != nil {
			return nil, fmt.Errorf("look up new vxlan device %s: %w", spec.Name, err)
		}
	}
	vx, ok := existing.(*netlink.Vxlan)
	if !ok {
		return nil, fmt.Errorf("device %s is a %s, not vxlan", spec.Name, existing.Type())
	}
	if vx.MTU != spec.MTU {
		if err := nl.LinkSetMTU(vx, spec.MTU); err != nil {
			return nil, fmt.Errorf("set mtu %d on %s: %w", spec.MTU, spec.Name, err)
		}
		vx.MTU = spec.MTU
	}
	if err := ensureAddress(nl, vx, spec.Address); err != nil {
		return nil, err
	}
	if vx.Flags&net.FlagUp == 0 {
		if err := nl.LinkSetUp(vx); err != nil {
			return nil, fmt.Errorf("bring up %s: %w", spec.Name, err)
		}
		vx.Flags |= net.FlagUp
	}
	return vx, nil
}

func vxlanMatches(vx *netlink.Vxlan, spec DeviceSpec) bool {
	return vx.VxlanId == spec.VNI &&
		vx.Port == spec.Port &&
		vx.VtepDevIndex == spec.UnderlayIndex &&
		(spec.UnderlayIP == nil || vx.SrcAddr.Equal(spec.UnderlayIP)) &&
		!vx.Learning &&
		len(vx.HardwareAddr) == 6
}

// ensureAddress leaves exactly one IPv4 address on the device: want/32. A stale address from an
// earlier pod CIDR would otherwise keep answering for a subnet the node no longer owns.
func ensureAddress(nl Netlink, link netlink.Link, want net.IP) error {
	addrs, err := listRetry("addresses of "+link.Attrs().Name, func() ([]netlink.Addr, error) {
		return nl.AddrList(link, unix.AF_INET)
	})
	if err != nil {
		return err
	}
	have := false
	for _, a := range addrs {
		ones, _ := a.Mask.Size()
		if a.IP.Equal(want) && ones == 32 {
			have = true
			continue
		}
		a := a
		if err := nl.AddrDel(link, &a); err != nil && !isGone(err) {
			return fmt.Errorf("remove stale address %s from %s: %w", a.IPNet, link.Attrs().Name, err)
		}
	}
	if have {
		return nil
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: want.To4(), Mask: net.CIDRMask(32, 32)}}
	if err := nl.AddrAdd(link, addr); err != nil {
		return fmt.Errorf("add address %s to %s: %w", addr.IPNet, link.Attrs().Name, err)
	}
	return nil
}

// macEqual compares MACs, treating nil and empty alike.
func macEqual(a, b net.HardwareAddr) bool { return bytes.Equal(a, b) }
