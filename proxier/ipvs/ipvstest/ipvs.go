// Package ipvstest holds stateful fakes of the kernel APIs the IPVS backend (proxier/ipvs) programs:
// the IPVS table (FakeIPVS), the node's links and addresses (FakeLinks) and its /proc/sys
// (NewFakeSysctl). They answer like the kernel, and the backend's tests assert their end state. They
// depend on the kernel libraries' types only, never on proxier/ipvs, so the backend's own tests can
// use them.
package ipvstest

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	mobyipvs "github.com/moby/ipvs"
	"golang.org/x/sys/unix"
)

// FakeIPVS is an in-memory IPVS table that answers like the kernel: adding a virtual server or real
// server that exists fails with EEXIST, touching a missing virtual server with ESRCH, a missing real
// server with ENOENT, an unknown scheduler with ENOENT, a negative weight with ERANGE and a real
// server of the other address family with EAFNOSUPPORT. Deleting a virtual server deletes its real
// servers. Writes counts mutating calls and Reads listing calls.
type FakeIPVS struct {
	Services map[FakeVSKey]*FakeVS
	Config   mobyipvs.Config
	Reads    int
	Writes   int
}

// FakeVSKey is the kernel's identity of a virtual server.
type FakeVSKey struct {
	Family   uint16
	Protocol uint16
	Addr     netip.Addr
	Port     uint16
}

// FakeVS is a virtual server and its real servers.
type FakeVS struct {
	Service mobyipvs.Service
	Dests   map[netip.AddrPort]*mobyipvs.Destination
}

// kernelSchedulers are the schedulers Linux ships (net/netfilter/ipvs/ip_vs_*.c); the fake knows no
// others. TestSchedulerValidation in proxier/ipvs holds the backend's list to this one.
var kernelSchedulers = []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos"}

// svcFlagPersistent is IP_VS_SVC_F_PERSISTENT, which moby/ipvs does not export.
const svcFlagPersistent = 0x1

// NewFakeIPVS returns an empty table.
func NewFakeIPVS() *FakeIPVS { return &FakeIPVS{Services: map[FakeVSKey]*FakeVS{}} }

func fakeKey(s *mobyipvs.Service) (FakeVSKey, error) {
	a, ok := netip.AddrFromSlice(s.Address)
	if !ok {
		return FakeVSKey{}, unix.EINVAL
	}
	a = a.Unmap()
	if (s.AddressFamily == unix.AF_INET) != a.Is4() {
		return FakeVSKey{}, unix.EAFNOSUPPORT
	}
	return FakeVSKey{s.AddressFamily, s.Protocol, a, s.Port}, nil
}

func (f *FakeIPVS) lookup(s *mobyipvs.Service) (*FakeVS, error) {
	k, err := fakeKey(s)
	if err != nil {
		return nil, err
	}
	vs, ok := f.Services[k]
	if !ok {
		return nil, unix.ESRCH
	}
	return vs, nil
}

func destKey(d *mobyipvs.Destination) (netip.AddrPort, error) {
	a, ok := netip.AddrFromSlice(d.Address)
	if !ok {
		return netip.AddrPort{}, unix.EINVAL
	}
	return netip.AddrPortFrom(a.Unmap(), d.Port), nil
}

func (f *FakeIPVS) GetServices() ([]*mobyipvs.Service, error) {
	f.Reads++
	out := make([]*mobyipvs.Service, 0, len(f.Services))
	for _, vs := range f.Services {
		s := vs.Service
		s.Address = slices.Clone(s.Address)
		s.Flags |= 0x2 // the kernel reports IP_VS_SVC_F_HASHED on every listed service
		out = append(out, &s)
	}
	return out, nil
}

func (f *FakeIPVS) GetDestinations(s *mobyipvs.Service) ([]*mobyipvs.Destination, error) {
	f.Reads++
	vs, err := f.lookup(s)
	if err != nil {
		return nil, err
	}
	out := make([]*mobyipvs.Destination, 0, len(vs.Dests))
	for _, d := range vs.Dests {
		c := *d
		c.Address = slices.Clone(d.Address)
		out = append(out, &c)
	}
	return out, nil
}

func (f *FakeIPVS) NewService(s *mobyipvs.Service) error {
	f.Writes++
	k, err := fakeKey(s)
	if err != nil {
		return err
	}
	if !slices.Contains(kernelSchedulers, s.SchedName) {
		return unix.ENOENT // the kernel cannot find (or load) ip_vs_<name>
	}
	if _, ok := f.Services[k]; ok {
		return unix.EEXIST
	}
	c := *s
	c.Address = net.IP(k.Addr.AsSlice())
	f.Services[k] = &FakeVS{Service: c, Dests: map[netip.AddrPort]*mobyipvs.Destination{}}
	return nil
}

func (f *FakeIPVS) UpdateService(s *mobyipvs.Service) error {
	f.Writes++
	vs, err := f.lookup(s)
	if err != nil {
		return err
	}
	if !slices.Contains(kernelSchedulers, s.SchedName) {
		return unix.ENOENT
	}
	addr := vs.Service.Address
	vs.Service = *s
	vs.Service.Address = addr
	return nil
}

func (f *FakeIPVS) DelService(s *mobyipvs.Service) error {
	f.Writes++
	k, err := fakeKey(s)
	if err != nil {
		return err
	}
	if _, ok := f.Services[k]; !ok {
		return unix.ESRCH
	}
	delete(f.Services, k)
	return nil
}

// settableDest finds the virtual server s and the key of real server d in it, refusing what the
// kernel refuses in a real server's settings: a negative weight, or the other address family unless
// the real server is reached by tunnelling.
func (f *FakeIPVS) settableDest(s *mobyipvs.Service, d *mobyipvs.Destination) (*FakeVS, netip.AddrPort, error) {
	vs, err := f.lookup(s)
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	k, err := destKey(d)
	if err != nil {
		return nil, k, err
	}
	if d.Weight < 0 {
		return nil, k, unix.ERANGE
	}
	if k.Addr().Is4() != (vs.Service.AddressFamily == unix.AF_INET) && d.ConnectionFlags&mobyipvs.ConnectionFlagFwdMask != mobyipvs.ConnectionFlagTunnel {
		return nil, k, unix.EAFNOSUPPORT
	}
	return vs, k, nil
}

func (f *FakeIPVS) NewDestination(s *mobyipvs.Service, d *mobyipvs.Destination) error {
	f.Writes++
	vs, k, err := f.settableDest(s, d)
	if err != nil {
		return err
	}
	if _, ok := vs.Dests[k]; ok {
		return unix.EEXIST
	}
	c := *d
	c.Address = net.IP(k.Addr().AsSlice())
	c.ActiveConnections, c.InactiveConnections = 0, 0
	vs.Dests[k] = &c
	return nil
}

func (f *FakeIPVS) UpdateDestination(s *mobyipvs.Service, d *mobyipvs.Destination) error {
	f.Writes++
	vs, k, err := f.settableDest(s, d)
	if err != nil {
		return err
	}
	old, ok := vs.Dests[k]
	if !ok {
		return unix.ENOENT
	}
	old.Weight, old.ConnectionFlags = d.Weight, d.ConnectionFlags
	old.UpperThreshold, old.LowerThreshold = d.UpperThreshold, d.LowerThreshold
	return nil
}

func (f *FakeIPVS) DelDestination(s *mobyipvs.Service, d *mobyipvs.Destination) error {
	f.Writes++
	vs, err := f.lookup(s)
	if err != nil {
		return err
	}
	k, err := destKey(d)
	if err != nil {
		return err
	}
	if _, ok := vs.Dests[k]; !ok {
		return unix.ENOENT
	}
	delete(vs.Dests, k)
	return nil
}

func (f *FakeIPVS) SetConfig(c *mobyipvs.Config) error {
	f.Writes++
	if c.TimeoutTCP < 0 || c.TimeoutTCPFin < 0 || c.TimeoutUDP < 0 {
		return unix.EINVAL
	}
	if c.TimeoutTCP != 0 {
		f.Config.TimeoutTCP = c.TimeoutTCP
	}
	if c.TimeoutTCPFin != 0 {
		f.Config.TimeoutTCPFin = c.TimeoutTCPFin
	}
	if c.TimeoutUDP != 0 {
		f.Config.TimeoutUDP = c.TimeoutUDP
	}
	return nil
}

// SetConnections sets the connection counters the kernel would report for a real server, as traffic
// would; it fails if the real server does not exist.
func (f *FakeIPVS) SetConnections(vs FakeVSKey, dest netip.AddrPort, active, inactive int) error {
	v, ok := f.Services[vs]
	if !ok {
		return fmt.Errorf("no virtual server %v", vs)
	}
	d, ok := v.Dests[dest]
	if !ok {
		return fmt.Errorf("no real server %v in %v", dest, vs)
	}
	d.ActiveConnections, d.InactiveConnections = active, inactive
	return nil
}

// Dump renders the table like a sorted `ipvsadm -Ln`, for end-state assertions.
func (f *FakeIPVS) Dump() string {
	var lines []string
	for k, vs := range f.Services {
		var b strings.Builder
		fmt.Fprintf(&b, "%s %s %s", protoName(k.Protocol), netip.AddrPortFrom(k.Addr, k.Port), vs.Service.SchedName)
		if vs.Service.Flags&svcFlagPersistent != 0 {
			fmt.Fprintf(&b, " persistent %d", vs.Service.Timeout)
		}
		var ds []string
		for dk, d := range vs.Dests {
			ds = append(ds, fmt.Sprintf("\n  -> %s weight %d", dk, d.Weight))
		}
		slices.Sort(ds)
		lines = append(lines, b.String()+strings.Join(ds, ""))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

func protoName(p uint16) string {
	switch p {
	case unix.IPPROTO_TCP:
		return "TCP"
	case unix.IPPROTO_UDP:
		return "UDP"
	case unix.IPPROTO_SCTP:
		return "SCTP"
	}
	return fmt.Sprintf("proto%d", p)
}
