package ipvs

import (
	mobyipvs "github.com/moby/ipvs"
	"github.com/vishvananda/netlink"

	utiliptables "github.com/switchyard/switchyard/internal/iptables"
	"github.com/switchyard/switchyard/proxier/ipvs/ipset"
)

// SyncStats counts the kernel round trips of one sync: each IPVS, ipset and link call is one netlink
// request and its answer; each iptables call is one process run.
type SyncStats struct {
	IPVSReads, IPVSWrites   int
	IpsetReads, IpsetWrites int
	LinkReads, LinkWrites   int
	IptablesCalls           int
}

// NetlinkRoundTrips is the total of the netlink calls.
func (s SyncStats) NetlinkRoundTrips() int {
	return s.IPVSReads + s.IPVSWrites + s.IpsetReads + s.IpsetWrites + s.LinkReads + s.LinkWrites
}

// Writes is the number of calls that changed (or tried to change) kernel state.
func (s SyncStats) Writes() int { return s.IPVSWrites + s.IpsetWrites + s.LinkWrites + s.IptablesCalls }

type countingIPVS struct {
	IPVS
	s *SyncStats
}

func (c countingIPVS) GetServices() ([]*mobyipvs.Service, error) {
	c.s.IPVSReads++
	return c.IPVS.GetServices()
}

func (c countingIPVS) GetDestinations(s *mobyipvs.Service) ([]*mobyipvs.Destination, error) {
	c.s.IPVSReads++
	return c.IPVS.GetDestinations(s)
}

func (c countingIPVS) NewService(s *mobyipvs.Service) error {
	c.s.IPVSWrites++
	return c.IPVS.NewService(s)
}

func (c countingIPVS) UpdateService(s *mobyipvs.Service) error {
	c.s.IPVSWrites++
	return c.IPVS.UpdateService(s)
}

func (c countingIPVS) DelService(s *mobyipvs.Service) error {
	c.s.IPVSWrites++
	return c.IPVS.DelService(s)
}

func (c countingIPVS) NewDestination(s *mobyipvs.Service, d *mobyipvs.Destination) error {
	c.s.IPVSWrites++
	return c.IPVS.NewDestination(s, d)
}

func (c countingIPVS) UpdateDestination(s *mobyipvs.Service, d *mobyipvs.Destination) error {
	c.s.IPVSWrites++
	return c.IPVS.UpdateDestination(s, d)
}

func (c countingIPVS) DelDestination(s *mobyipvs.Service, d *mobyipvs.Destination) error {
	c.s.IPVSWrites++
	return c.IPVS.DelDestination(s, d)
}

func (c countingIPVS) SetConfig(cfg *mobyipvs.Config) error {
	c.s.IPVSWrites++
	return c.IPVS.SetConfig(cfg)
}

type countingIpset struct {
	ipset.Netlink
	s *SyncStats
}

func (c countingIpset) IpsetCreate(n, t string, o netlink.IpsetCreateOptions) error {
	c.s.IpsetWrites++
	return c.Netlink.IpsetCreate(n, t, o)
}

func (c countingIpset) IpsetDestroy(n string) error {
	c.s.IpsetWrites++
	return c.Netlink.IpsetDestroy(n)
}

func (c countingIpset) IpsetAdd(n string, e *netlink.IPSetEntry) error {
	c.s.IpsetWrites++
	return c.Netlink.IpsetAdd(n, e)
}

func (c countingIpset) IpsetDel(n string, e *netlink.IPSetEntry) error {
	c.s.IpsetWrites++
	return c.Netlink.IpsetDel(n, e)
}

func (c countingIpset) IpsetList(n string) (*netlink.IPSetResult, error) {
	c.s.IpsetReads++
	return c.Netlink.IpsetList(n)
}

func (c countingIpset) IpsetListAll() ([]netlink.IPSetResult, error) {
	c.s.IpsetReads++
	return c.Netlink.IpsetListAll()
}

type countingLinks struct {
	Links
	s *SyncStats
}

func (c countingLinks) LinkByName(n string) (netlink.Link, error) {
	c.s.LinkReads++
	return c.Links.LinkByName(n)
}

func (c countingLinks) AddrList(l netlink.Link, f int) ([]netlink.Addr, error) {
	c.s.LinkReads++
	return c.Links.AddrList(l, f)
}

func (c countingLinks) LinkAdd(l netlink.Link) error {
	c.s.LinkWrites++
	return c.Links.LinkAdd(l)
}

func (c countingLinks) LinkSetUp(l netlink.Link) error {
	c.s.LinkWrites++
	return c.Links.LinkSetUp(l)
}

func (c countingLinks) AddrAdd(l netlink.Link, a *netlink.Addr) error {
	c.s.LinkWrites++
	return c.Links.AddrAdd(l, a)
}

func (c countingLinks) AddrDel(l netlink.Link, a *netlink.Addr) error {
	c.s.LinkWrites++
	return c.Links.AddrDel(l, a)
}

type countingIptables struct {
	utiliptables.Interface
	s *SyncStats
}

func (c countingIptables) Restore(d []byte) error {
	c.s.IptablesCalls++
	return c.Interface.Restore(d)
}

func (c countingIptables) EnsureRule(pos utiliptables.Position, t, ch string, a ...string) error {
	c.s.IptablesCalls++
	return c.Interface.EnsureRule(pos, t, ch, a...)
}

func (c countingIptables) DeleteRule(t, ch string, a ...string) error {
	c.s.IptablesCalls++
	return c.Interface.DeleteRule(t, ch, a...)
}
