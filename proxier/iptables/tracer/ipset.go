package tracer

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

// dimKind is what one dimension of an ipset type holds.
type dimKind int

const (
	dimIP dimKind = iota
	dimNet
	dimPort
)

// setTypes lists the ipset types the tracer can test, with their dimensions.
var setTypes = map[string][]dimKind{
	"hash:ip":          {dimIP},
	"hash:net":         {dimNet},
	"hash:ip,port":     {dimIP, dimPort},
	"hash:net,port":    {dimNet, dimPort},
	"hash:ip,port,ip":  {dimIP, dimPort, dimIP},
	"hash:ip,port,net": {dimIP, dimPort, dimNet},
	"bitmap:port":      {dimPort},
}

// setPart is one dimension of a member: a prefix (a single address is a full-length prefix), or a
// protocol and port (proto is empty for bitmap:port, which ignores the protocol).
type setPart struct {
	net   netip.Prefix
	proto string
	port  uint16
}

type ipset struct {
	name    string
	typ     string
	dims    []dimKind
	members [][]setPart
}

// Sets is an in-memory SetTable: ipsets by name, filled by AddSet or parsed from `ipset save`.
type Sets struct {
	sets map[string]*ipset
}

var _ SetTable = (*Sets)(nil)

// NewSets returns an empty set table.
func NewSets() *Sets { return &Sets{sets: map[string]*ipset{}} }

// Create makes an empty set of the given type; making one that exists with another type is an error,
// as it is for ipset.
func (s *Sets) Create(name, typ string) error {
	dims, ok := setTypes[typ]
	if !ok {
		return fmt.Errorf("ipset %s: unsupported type %q", name, typ)
	}
	if old := s.sets[name]; old != nil {
		if old.typ != typ {
			return fmt.Errorf("ipset %s exists with type %s, not %s", name, old.typ, typ)
		}
		return nil
	}
	s.sets[name] = &ipset{name: name, typ: typ, dims: dims}
	return nil
}

// Add adds members written as `ipset add` writes them ("10.96.0.1,tcp:80", "30080", "10.0.0.0/8").
func (s *Sets) Add(name string, members ...string) error {
	set := s.sets[name]
	if set == nil {
		return fmt.Errorf("ipset %s does not exist", name)
	}
	for _, m := range members {
		parts, err := set.parseMember(m)
		if err != nil {
			return fmt.Errorf("ipset %s: member %q: %w", name, m, err)
		}
		set.members = append(set.members, parts)
	}
	return nil
}

// Names returns the set names, sorted.
func (s *Sets) Names() []string {
	var out []string
	for n := range s.sets {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// ParseIPSetSave reads `ipset save` output (create and add lines).
func ParseIPSetSave(text string) (*Sets, error) {
	s := NewSets()
	for i, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		var err error
		switch {
		case f[0] == "create" && len(f) >= 3:
			// Options after the type (family, hashsize, maxelem, range) do not change membership.
			if strings.Contains(line, "family inet6") {
				err = fmt.Errorf("only family inet is supported")
				break
			}
			err = s.Create(f[1], f[2])
		case f[0] == "add" && len(f) == 3:
			err = s.Add(f[1], f[2])
		default:
			err = fmt.Errorf("unsupported line")
		}
		if err != nil {
			return nil, fmt.Errorf("ipset save line %d %q: %w", i+1, line, err)
		}
	}
	return s, nil
}

func (set *ipset) parseMember(m string) ([]setPart, error) {
	fields := strings.Split(m, ",")
	if len(fields) != len(set.dims) {
		return nil, fmt.Errorf("%s needs %d parts", set.typ, len(set.dims))
	}
	parts := make([]setPart, len(fields))
	for i, f := range fields {
		switch set.dims[i] {
		case dimIP, dimNet:
			p, err := parsePrefix(f)
			if err != nil {
				return nil, err
			}
			if set.dims[i] == dimIP && p.Bits() != p.Addr().BitLen() {
				return nil, fmt.Errorf("%s holds addresses, not networks", set.typ)
			}
			parts[i].net = p
		case dimPort:
			proto, port := "", f
			if set.typ != "bitmap:port" {
				proto = "tcp"
				if pr, po, ok := strings.Cut(f, ":"); ok {
					proto, port = pr, po
				}
				if !isPortProto(proto) {
					return nil, fmt.Errorf("unsupported protocol %q", proto)
				}
			}
			n, err := parsePort(port)
			if err != nil {
				return nil, err
			}
			parts[i].proto, parts[i].port = proto, n
		}
	}
	return parts, nil
}

// Test implements SetTable.
func (s *Sets) Test(name string, dst []bool, f Flow) (bool, error) {
	set := s.sets[name]
	if set == nil {
		return false, fmt.Errorf("ipset %s does not exist", name)
	}
	if len(dst) < len(set.dims) {
		return false, fmt.Errorf("ipset %s of type %s needs %d direction flags, rule gives %d", name, set.typ, len(set.dims), len(dst))
	}
	for _, m := range set.members {
		if memberMatches(set, m, dst, f) {
			return true, nil
		}
	}
	return false, nil
}

func memberMatches(set *ipset, m []setPart, dst []bool, f Flow) bool {
	for i, kind := range set.dims {
		addr, port := f.Src, f.SrcPort
		if dst[i] {
			addr, port = f.Dst, f.DstPort
		}
		switch kind {
		case dimIP, dimNet:
			if !m[i].net.Contains(addr) {
				return false
			}
		case dimPort:
			if m[i].port != port || (m[i].proto != "" && m[i].proto != f.Proto) {
				return false
			}
			if m[i].proto == "" && !isPortProto(f.Proto) {
				return false
			}
		}
	}
	return true
}
