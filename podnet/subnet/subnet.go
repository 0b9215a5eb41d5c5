// Package subnet reads and writes the small file through which the Switchyard daemon tells the CNI
// plugin about the node's pod network: the cluster CIDR, the node's pod CIDR, the pod MTU and whether
// egress is masqueraded. The format is KEY=value lines, like flannel's subnet.env, so that shell
// scripts can source it too.
package subnet

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// DefaultPath is where the daemon writes the file unless --subnet-file says otherwise.
const DefaultPath = "/run/switchyard/subnet.env"

const (
	keyNetwork = "SWITCHYARD_NETWORK"
	keySubnet  = "SWITCHYARD_SUBNET"
	keyMTU     = "SWITCHYARD_MTU"
	keyIPMasq  = "SWITCHYARD_IPMASQ"
)

// Info is the content of the subnet file.
type Info struct {
	Network *net.IPNet // cluster CIDR
	Subnet  *net.IPNet // this node's pod CIDR
	MTU     int
	IPMasq  bool
}

// ErrNotFound is returned (wrapped) by Read when the file does not exist yet, which usually means the
// daemon has not started or is still waiting for the node's pod CIDR.
var ErrNotFound = errors.New("subnet file not found")

// Render returns the file's bytes.
func Render(info Info) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s=%s\n", keyNetwork, info.Network)
	fmt.Fprintf(&b, "%s=%s\n", keySubnet, info.Subnet)
	fmt.Fprintf(&b, "%s=%d\n", keyMTU, info.MTU)
	fmt.Fprintf(&b, "%s=%t\n", keyIPMasq, info.IPMasq)
	return b.Bytes()
}

// Write replaces path atomically (temporary file, fsync, rename), so a plugin running concurrently
// reads either the old or the new content, never half of one. It reports whether the content changed.
func Write(path string, info Info) (bool, error) {
	data := Render(info)
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return false, nil
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, fmt.Errorf("create directory for subnet file: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".subnet-*.env")
	if err != nil {
		return false, fmt.Errorf("write subnet file %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return false, fmt.Errorf("write subnet file %s: %w", path, err)
	}
	return true, nil
}

// Read parses the file at path.
func Read(path string) (Info, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return Info{}, fmt.Errorf("%w: %s", ErrNotFound, path)
	}
	if err != nil {
		return Info{}, fmt.Errorf("read subnet file: %w", err)
	}
	info, err := Parse(data)
	if err != nil {
		return Info{}, fmt.Errorf("subnet file %s: %w", path, err)
	}
	return info, nil
}

// Parse parses the file's content and checks that it is complete and consistent.
func Parse(data []byte) (Info, error) {
	var info Info
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		key, value, ok := strings.Cut(text, "=")
		if !ok {
			return Info{}, fmt.Errorf("line %d: want KEY=value, got %q", line, text)
		}
		var err error
		switch key {
		case keyNetwork:
			_, info.Network, err = net.ParseCIDR(value)
		case keySubnet:
			_, info.Subnet, err = net.ParseCIDR(value)
		case keyMTU:
			info.MTU, err = strconv.Atoi(value)
			if err == nil && (info.MTU < 576 || info.MTU > 65535) {
				err = fmt.Errorf("MTU %d out of range", info.MTU)
			}
		case keyIPMasq:
			info.IPMasq, err = strconv.ParseBool(value)
		default:
			continue // unknown keys are for newer readers
		}
		if err != nil {
			return Info{}, fmt.Errorf("line %d (%s): %w", line, key, err)
		}
		seen[key] = true
	}
	for _, k := range []string{keyNetwork, keySubnet, keyMTU} {
		if !seen[k] {
			return Info{}, fmt.Errorf("%s missing", k)
		}
	}
	if info.Subnet.IP.To4() == nil || info.Network.IP.To4() == nil {
		return Info{}, fmt.Errorf("only IPv4 is supported (network %s, subnet %s)", info.Network, info.Subnet)
	}
	if ones, _ := info.Subnet.Mask.Size(); ones > 30 {
		return Info{}, fmt.Errorf("subnet %s leaves no room for pods", info.Subnet)
	}
	if !info.Network.Contains(info.Subnet.IP) {
		return Info{}, fmt.Errorf("subnet %s is outside network %s", info.Subnet, info.Network)
	}
	return info, nil
}
