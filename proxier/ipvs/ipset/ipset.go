// Package ipset manages the kernel ipsets that the IPVS backend's constant iptables rules match. It talks
// to the kernel through netlink (the subset of *netlink.Handle's Ipset* methods in Netlink), converts
// between netlink's entry structs and a small comparable Entry value that can key Go maps. Its stateful
// fake, which refuses what the kernel refuses, is ipsettest.Fake.
package ipset

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Netlink is the part of *netlink.Handle this package needs. A handle opened in a network namespace
// (netlink.NewHandleAt) scopes every call to that namespace.
type Netlink interface {
	IpsetCreate(setname, typename string, options netlink.IpsetCreateOptions) error
	IpsetDestroy(setname string) error
	IpsetAdd(setname string, entry *netlink.IPSetEntry) error
	IpsetDel(setname string, entry *netlink.IPSetEntry) error
	IpsetList(setname string) (*netlink.IPSetResult, error)
	IpsetListAll() ([]netlink.IPSetResult, error)
}

var _ Netlink = (*netlink.Handle)(nil)

// Type is an ipset type name as the kernel spells it.
type Type string

const (
	HashIP        Type = "hash:ip"
	HashIPPort    Type = "hash:ip,port"
	HashIPPortIP  Type = "hash:ip,port,ip"
	HashIPPortNet Type = "hash:ip,port,net"
)

// bitmap:port is deliberately missing: netlink's IPSetEntry always sends a protocol attribute with a
// port, and the kernel refuses that attribute for bitmap:port ("invalid protocol"). NodePorts are
// therefore kept as address,protocol:port pairs in a hash:ip,port set.

// Set describes one set: its name, type and address family (4 or 6).
type Set struct {
	Name    string
	Type    Type
	Family  int
	Comment string // for humans reading `ipset list`; not stored in the kernel
}

// MaxNameLen is the kernel's limit on a set name (IPSET_MAXNAMELEN minus the terminating NUL).
const MaxNameLen = 31

// Entry is one member of a set, comparable so it can key a map. Which fields are used depends on the
// set type: hash:ip uses IP; hash:ip,port adds Protocol and Port; hash:ip,port,ip adds IP2;
// hash:ip,port,net adds Net.
type Entry struct {
	IP       netip.Addr
	Protocol string // "tcp", "udp" or "sctp"
	Port     uint16
	IP2      netip.Addr
	Net      netip.Prefix
}

// String spells the entry as the ipset tool does, e.g. "10.96.0.1,tcp:443".
func (e Entry) String() string {
	var b strings.Builder
	if e.IP.IsValid() {
		b.WriteString(e.IP.String())
	}
	if e.Protocol != "" {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(e.Protocol)
		b.WriteByte(':')
	}
	if e.Port != 0 || e.Protocol != "" {
		if e.Protocol == "" && b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(int(e.Port)))
	}
	if e.IP2.IsValid() {
		b.WriteByte(',')
		b.WriteString(e.IP2.String())
	}
	if e.Net.IsValid() {
		b.WriteByte(',')
		b.WriteString(e.Net.String())
	}
	return b.String()
}

// Validate reports whether e has exactly the fields the set type needs.
func (t Type) Validate(e Entry) error {
	hasIP, hasPort, hasIP2, hasNet := e.IP.IsValid(), e.Protocol != "", e.IP2.IsValid(), e.Net.IsValid()
	var ok bool
	switch t {
	case HashIP:
		ok = hasIP && !hasPort && e.Port == 0 && !hasIP2 && !hasNet
	case HashIPPort:
		ok = hasIP && hasPort && !hasIP2 && !hasNet
	case HashIPPortIP:
		ok = hasIP && hasPort && hasIP2 && !hasNet
	case HashIPPortNet:
		ok = hasIP && hasPort && !hasIP2 && hasNet
	default:
		return fmt.Errorf("unsupported ipset type %q", t)
	}
	if !ok {
		return fmt.Errorf("entry %q does not fit a %s set", e, t)
	}
	if hasPort {
		if _, err := protoNumber(e.Protocol); err != nil {
			return err
		}
	}
	return nil
}

func protoNumber(p string) (uint8, error) {
	switch p {
	case "tcp":
		return unix.IPPROTO_TCP, nil
	case "udp":
		return unix.IPPROTO_UDP, nil
	case "sctp":
		return unix.IPPROTO_SCTP, nil
	}
	return 0, fmt.Errorf("unsupported ipset protocol %q", p)
}

func protoName(n uint8) string {
	switch n {
	case unix.IPPROTO_TCP:
		return "tcp"
	case unix.IPPROTO_UDP:
		return "udp"
	case unix.IPPROTO_SCTP:
		return "sctp"
	}
	return "proto" + strconv.Itoa(int(n))
}

// ToNetlink converts e into netlink's form. Replace is false, so adding an entry that exists fails, as
// it does with the ipset tool without -exist.
func ToNetlink(t Type, e Entry) (*netlink.IPSetEntry, error) {
	if err := t.Validate(e); err != nil {
		return nil, err
	}
	out := &netlink.IPSetEntry{}
	if e.IP.IsValid() {
		out.IP = net.IP(e.IP.AsSlice())
	}
	if e.Protocol != "" {
		n, _ := protoNumber(e.Protocol)
		port := e.Port
		out.Protocol, out.Port = &n, &port
	}
	if e.IP2.IsValid() {
		out.IP2 = net.IP(e.IP2.AsSlice())
	}
	if e.Net.IsValid() {
		out.IP2 = net.IP(e.Net.Addr().AsSlice())
		out.CIDR2 = uint8(e.Net.Bits())
	}
	return out, nil
}

// FromNetlink converts a listed entry back, for a set of type t.
func FromNetlink(t Type, n *netlink.IPSetEntry) (Entry, error) {
	var e Entry
	if n.IP != nil {
		ip, ok := netip.AddrFromSlice(n.IP)
		if !ok {
			return e, fmt.Errorf("bad IP %v in %s entry", n.IP, t)
		}
		e.IP = ip.Unmap()
	}
	if t == HashIP {
		return e, nil
	}
	if n.Port == nil {
		return e, fmt.Errorf("%s entry without a port", t)
	}
	e.Port = *n.Port
	e.Protocol = "tcp"
	if n.Protocol != nil {
		e.Protocol = protoName(*n.Protocol)
	}
	if n.IP2 != nil {
		ip2, ok := netip.AddrFromSlice(n.IP2)
		if !ok {
			return e, fmt.Errorf("bad second IP %v in %s entry", n.IP2, t)
		}
		ip2 = ip2.Unmap()
		if t == HashIPPortNet {
			bits := int(n.CIDR2)
			if bits == 0 {
				bits = ip2.BitLen()
			}
			e.Net = netip.PrefixFrom(ip2, bits)
		} else {
			e.IP2 = ip2
		}
	}
	return e, nil
}

// IsNotFound reports whether err is the kernel's answer for a set that does not exist.
func IsNotFound(err error) bool { return errors.Is(err, unix.ENOENT) }

// IsExist reports whether err is the kernel's answer for adding an entry that is already present (and,
// as the kernel reuses the code, for deleting one that is absent).
func IsExist(err error) bool {
	var e nl.IPSetError
	return errors.As(err, &e) && e == nl.IPSET_ERR_EXIST
}

// Ensure creates set s unless a set of that name already exists with the same type. A set of that
// name with another type is an error: the caller must not silently adopt it.
func Ensure(h Netlink, s Set) (created bool, err error) {
	if len(s.Name) > MaxNameLen {
		return false, fmt.Errorf("ipset name %q longer than %d characters", s.Name, MaxNameLen)
	}
	if got, err := h.IpsetList(s.Name); err == nil {
		if Type(got.TypeName) != s.Type {
			return false, fmt.Errorf("ipset %s exists with type %s, want %s", s.Name, got.TypeName, s.Type)
		}
		return false, nil
	}
	if err := Create(h, s); err != nil {
		return false, err
	}
	return true, nil
}

// Create creates set s, failing if a set of that name exists.
func Create(h Netlink, s Set) error {
	if len(s.Name) > MaxNameLen {
		return fmt.Errorf("ipset name %q longer than %d characters", s.Name, MaxNameLen)
	}
	opts := netlink.IpsetCreateOptions{Family: unix.AF_INET}
	if s.Family == 6 {
		opts.Family = unix.AF_INET6
	}
	if err := h.IpsetCreate(s.Name, string(s.Type), opts); err != nil {
		return fmt.Errorf("create ipset %s (%s): %w", s.Name, s.Type, err)
	}
	return nil
}

// List returns the members of set s, or found=false when the set does not exist. The kernel may split a
// large set over several messages; the netlink library merges them for a named list.
func List(h Netlink, s Set) (entries map[Entry]struct{}, found bool, err error) {
	res, err := h.IpsetList(s.Name)
	if err != nil {
		if IsNotFound(err) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("list ipset %s: %w", s.Name, err)
	}
	if Type(res.TypeName) != s.Type {
		// Reading its members as another type would misparse them; the caller must not adopt it.
		return nil, true, fmt.Errorf("ipset %s exists with type %s, want %s (destroy it, or run --cleanup)", s.Name, res.TypeName, s.Type)
	}
	entries = make(map[Entry]struct{}, len(res.Entries))
	for i := range res.Entries {
		e, err := FromNetlink(s.Type, &res.Entries[i])
		if err != nil {
			return nil, true, fmt.Errorf("list ipset %s: %w", s.Name, err)
		}
		entries[e] = struct{}{}
	}
	return entries, true, nil
}

// Names lists the names of every set in the namespace, sorted and deduplicated (a large set's dump
// spans several messages, each carrying its name).
func Names(h Netlink) ([]string, error) {
	all, err := h.IpsetListAll()
	if err != nil {
		return nil, fmt.Errorf("list ipsets: %w", err)
	}
	seen := map[string]bool{}
	var out []string
	for _, r := range all {
		if r.SetName != "" && !seen[r.SetName] {
			seen[r.SetName] = true
			out = append(out, r.SetName)
		}
	}
	sort.Strings(out)
	return out, nil
}

// Add adds e to set s.
func Add(h Netlink, s Set, e Entry) error {
	return write(h.IpsetAdd, "add %s to ipset %s", s, e)
}

// Del removes e from set s.
func Del(h Netlink, s Set, e Entry) error {
	return write(h.IpsetDel, "delete %s from ipset %s", s, e)
}

// write converts e to the netlink form for s's type and applies op (IpsetAdd or IpsetDel) to it;
// failed describes op in an error, with the entry and the set's name.
func write(op func(setname string, entry *netlink.IPSetEntry) error, failed string, s Set, e Entry) error {
	n, err := ToNetlink(s.Type, e)
	if err != nil {
		return fmt.Errorf("ipset %s: %w", s.Name, err)
	}
	if err := op(s.Name, n); err != nil {
		return fmt.Errorf(failed+": %w", e, s.Name, err)
	}
	return nil
}
