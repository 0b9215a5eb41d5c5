// Package ipsettest holds the stateful fake of the kernel's ipsets that proxier/ipvs/ipset's Netlink
// seam is tested against.
package ipsettest

import (
	"fmt"
	"net/netip"
	"sort"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/switchyard/switchyard/proxier/ipvs/ipset"
)

// Fake is an in-memory ipset kernel. It answers like the kernel does: creating a set that exists,
// adding an entry that is present, deleting one that is absent, or touching a set that does not exist
// all fail with the kernel's error code, and entries that do not fit the set's type are refused. Writes
// counts every mutating call, so tests can assert that an unchanged sync writes nothing.
type Fake struct {
	Sets   map[string]*FakeSet
	Writes int
}

// FakeSet is one set held by Fake.
type FakeSet struct {
	Type    ipset.Type
	Family  uint8
	Entries map[ipset.Entry]struct{}
}

var _ ipset.Netlink = (*Fake)(nil)

// NewFake returns an empty fake kernel.
func NewFake() *Fake { return &Fake{Sets: map[string]*FakeSet{}} }

// Members returns the entries of a set as sorted strings, or nil if the set does not exist.
func (f *Fake) Members(name string) []string {
	s, ok := f.Sets[name]
	if !ok {
		return nil
	}
	out := make([]string, 0, len(s.Entries))
	for e := range s.Entries {
		out = append(out, e.String())
	}
	sort.Strings(out)
	return out
}

func (f *Fake) IpsetCreate(name, typename string, o netlink.IpsetCreateOptions) error {
	f.Writes++
	if len(name) > ipset.MaxNameLen {
		return unix.ENAMETOOLONG
	}
	if _, ok := f.Sets[name]; ok && !o.Replace {
		return unix.EEXIST
	}
	t := ipset.Type(typename)
	if err := t.Validate(exampleEntry(t)); err != nil {
		return unix.EINVAL // unknown type
	}
	f.Sets[name] = &FakeSet{Type: t, Family: o.Family, Entries: map[ipset.Entry]struct{}{}}
	return nil
}

func (f *Fake) IpsetDestroy(name string) error {
	f.Writes++
	// Through the netlink library, destroying a missing set reports no error (measured on kernel 6.18 by
	// TestRealKernelIpset), so the fake does the same; callers must not rely on an error here.
	delete(f.Sets, name)
	return nil
}

func (f *Fake) entry(name string, n *netlink.IPSetEntry) (*FakeSet, ipset.Entry, error) {
	s, ok := f.Sets[name]
	if !ok {
		return nil, ipset.Entry{}, unix.ENOENT
	}
	e, err := ipset.FromNetlink(s.Type, n)
	if err != nil {
		return nil, ipset.Entry{}, unix.EINVAL
	}
	if err := s.Type.Validate(e); err != nil {
		return nil, ipset.Entry{}, unix.EINVAL
	}
	want := uint8(unix.AF_INET)
	if e.IP.Is6() {
		want = unix.AF_INET6
	}
	if s.Family != want {
		return nil, ipset.Entry{}, nl.IPSetError(nl.IPSET_ERR_INVALID_FAMILY)
	}
	return s, e, nil
}

func (f *Fake) IpsetAdd(name string, n *netlink.IPSetEntry) error {
	f.Writes++
	s, e, err := f.entry(name, n)
	if err != nil {
		return err
	}
	if _, ok := s.Entries[e]; ok && !n.Replace {
		return nl.IPSetError(nl.IPSET_ERR_EXIST)
	}
	s.Entries[e] = struct{}{}
	return nil
}

func (f *Fake) IpsetDel(name string, n *netlink.IPSetEntry) error {
	f.Writes++
	s, e, err := f.entry(name, n)
	if err != nil {
		return err
	}
	if _, ok := s.Entries[e]; !ok {
		return nl.IPSetError(nl.IPSET_ERR_EXIST)
	}
	delete(s.Entries, e)
	return nil
}

func (f *Fake) IpsetList(name string) (*netlink.IPSetResult, error) {
	s, ok := f.Sets[name]
	if !ok {
		return nil, unix.ENOENT
	}
	res := &netlink.IPSetResult{SetName: name, TypeName: string(s.Type), Family: s.Family}
	for e := range s.Entries {
		n, err := ipset.ToNetlink(s.Type, e)
		if err != nil {
			return nil, fmt.Errorf("fake ipset holds a bad entry: %w", err)
		}
		res.Entries = append(res.Entries, *n)
	}
	return res, nil
}

func (f *Fake) IpsetListAll() ([]netlink.IPSetResult, error) {
	names := make([]string, 0, len(f.Sets))
	for n := range f.Sets {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]netlink.IPSetResult, 0, len(names))
	for _, n := range names {
		r, err := f.IpsetList(n)
		if err != nil {
			return nil, err
		}
		out = append(out, *r)
	}
	return out, nil
}

// exampleEntry returns an entry that fits t, used to tell known types from unknown ones.
func exampleEntry(t ipset.Type) ipset.Entry {
	ip := netip.MustParseAddr("192.0.2.1")
	switch t {
	case ipset.HashIP:
		return ipset.Entry{IP: ip}
	case ipset.HashIPPort:
		return ipset.Entry{IP: ip, Protocol: "tcp", Port: 1}
	case ipset.HashIPPortIP:
		return ipset.Entry{IP: ip, Protocol: "tcp", Port: 1, IP2: ip}
	case ipset.HashIPPortNet:
		return ipset.Entry{IP: ip, Protocol: "tcp", Port: 1, Net: netip.MustParsePrefix("192.0.2.0/24")}
	}
	return ipset.Entry{}
}
