package vxlan

import (
	"crypto/sha256"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
)

// RouteProtocol tags every route the overlay installs (rtnetlink's rtm_protocol), so that listing
// "our" routes, including direct-routing ones through the underlay device, never picks up a route
// somebody else made. 83 ('S') is unassigned in iproute2's rt_protos.
const RouteProtocol netlink.RouteProtocol = 83

// DeviceName is the VXLAN device for a VNI. Linux limits interface names to 15 bytes; "syvx." plus the
// largest 24-bit VNI (8 digits) is 13.
func DeviceName(vni int) string { return fmt.Sprintf("syvx.%d", vni) }

// DeriveMAC returns the VTEP MAC a node uses when no device exists yet. It is a locally administered
// unicast address derived from the node name and VNI, so a node that reboots (and so loses the device)
// comes back with the same MAC and its peers' FDB and neighbour entries stay valid.
func DeriveMAC(nodeName string, vni int) net.HardwareAddr {
	sum := sha256.Sum256([]byte(fmt.Sprintf("switchyard-vtep/%s/%d", nodeName, vni)))
	mac := net.HardwareAddr(append([]byte(nil), sum[:6]...))
	mac[0] = (mac[0] | 0x02) &^ 0x01 // locally administered, unicast
	return mac
}

// VTEPIP is the address a node's VXLAN device holds: the network address of its pod CIDR, as a /32.
// Peers use it as the onlink gateway of the node's pod CIDR and as the key of its neighbour entry.
func VTEPIP(podCIDR *net.IPNet) net.IP {
	return podCIDR.IP.Mask(podCIDR.Mask).To4()
}
