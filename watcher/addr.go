package watcher

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	v1 "k8s.io/api/core/v1"

	"github.com/switchyard/switchyard/proxier/model"
)

// parseIP parses an address from an API object. Like kube-proxy's sloppy parser it accepts IPv4
// octets with leading zeros (read as decimal), which old objects may still hold, and it reads an
// IPv4-mapped IPv6 address as the IPv4 address it maps. Zoned addresses are refused: no Service or
// endpoint address can carry an interface zone.
func parseIP(s string) (netip.Addr, error) {
	ip, err := netip.ParseAddr(s)
	if err != nil {
		ip, err = parseIPv4LeadingZeros(s)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("parse IP %q: %w", s, err)
		}
	}
	if ip.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("parse IP %q: zoned addresses are not allowed", s)
	}
	return ip.Unmap(), nil
}

// parseIPv4LeadingZeros reads dotted-quad IPv4 whose octets may have leading zeros ("010.0.0.1").
func parseIPv4LeadingZeros(s string) (netip.Addr, error) {
	parts := strings.Split(s, ".")
	if len(parts) != 4 {
		return netip.Addr{}, fmt.Errorf("not an IP address")
	}
	var b [4]byte
	for i, p := range parts {
		if p == "" || len(p) > 3 || strings.TrimLeft(p, "0123456789") != "" {
			return netip.Addr{}, fmt.Errorf("not an IP address")
		}
		n, err := strconv.Atoi(p)
		if err != nil || n > 255 {
			return netip.Addr{}, fmt.Errorf("octet %q out of range", p)
		}
		b[i] = byte(n)
	}
	return netip.AddrFrom4(b), nil
}

// parsePrefix parses a CIDR, with the same leniency as parseIP for its address, and masks off host
// bits ("10.0.0.1/8" means 10.0.0.0/8, as net.ParseCIDR reads it).
func parsePrefix(s string) (netip.Prefix, error) {
	addr, bits, ok := strings.Cut(s, "/")
	if !ok {
		return netip.Prefix{}, fmt.Errorf("parse CIDR %q: no prefix length", s)
	}
	ip, err := parseIP(addr)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("parse CIDR %q: %w", s, err)
	}
	n, err := strconv.Atoi(bits)
	if err != nil || strings.TrimLeft(bits, "0123456789") != "" {
		return netip.Prefix{}, fmt.Errorf("parse CIDR %q: bad prefix length", s)
	}
	p, err := ip.Prefix(n)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("parse CIDR %q: %w", s, err)
	}
	return p, nil
}

// familyOfAddr is the model family of a parsed (unmapped) address.
func familyOfAddr(ip netip.Addr) model.IPFamily {
	if ip.Is4() {
		return model.IPv4
	}
	return model.IPv6
}

// familyMatches reports whether ip belongs to the API family f. An unknown family never matches.
func familyMatches(f v1.IPFamily, ip netip.Addr) bool {
	switch f {
	case v1.IPv4Protocol:
		return ip.Is4()
	case v1.IPv6Protocol:
		return ip.Is6()
	}
	return false
}
