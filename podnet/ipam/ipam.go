// Package ipam hands out pod addresses from the node's pod CIDR. Allocations live on disk, one file per
// address, so they survive plugin and node-agent restarts, and every operation holds an exclusive
// flock on the store's lock file, so that concurrent CNI invocations (separate processes) never hand
// out the same address.
package ipam

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrPoolFull means every usable address of the subnet is allocated.
var ErrPoolFull = errors.New("no free pod address left")

// Store is the allocation directory of one CNI network.
type Store struct {
	dir string
}

// Open returns the store for network under dataDir, creating its directory.
func Open(dataDir, network string) (*Store, error) {
	if network == "" || strings.ContainsAny(network, "/\\") || network == "." || network == ".." {
		return nil, fmt.Errorf("network name %q cannot be a directory name", network)
	}
	dir := filepath.Join(dataDir, network)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create ipam directory: %w", err)
	}
	return &Store{dir: dir}, nil
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

// lock takes the store's exclusive lock; the returned function releases it. flock locks belong to the
// open file description, so goroutines of one process exclude each other as separate processes do.
func (s *Store) lock() (func(), error) {
	f, err := os.OpenFile(filepath.Join(s.dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open ipam lock: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock ipam store: %w", err)
	}
	return func() { f.Close() }, nil // closing the last descriptor releases the lock
}

func owner(id, ifname string) string { return id + "\n" + ifname + "\n" }

func (s *Store) indexPath(id, ifname string) string {
	sum := sha256.Sum256([]byte(owner(id, ifname)))
	return filepath.Join(s.dir, "c-"+hex.EncodeToString(sum[:16]))
}

func (s *Store) addrPath(ip net.IP) string { return filepath.Join(s.dir, ip.String()) }

// writeFile writes data to path atomically: readers and a crash see the old file or the whole new one.
func writeFile(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// lookupLocked returns the address recorded for the owner, verifying that the address file agrees.
func (s *Store) lookupLocked(id, ifname string) (net.IP, error) {
	data, err := os.ReadFile(s.indexPath(id, ifname))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read ipam index: %w", err)
	}
	ip := net.ParseIP(strings.TrimSpace(string(data))).To4()
	if ip == nil {
		return nil, nil
	}
	got, err := os.ReadFile(s.addrPath(ip))
	if err != nil || string(got) != owner(id, ifname) {
		return nil, nil // stale index left by an interrupted release
	}
	return ip, nil
}

// Allocate returns the address of (id, ifname), reserving a free one from subnet if it has none. The
// network address, the gateway (first address) and the broadcast address are never handed out. The
// search continues after the last reserved address, so a just-released address is not reused at once.
func (s *Store) Allocate(subnet *net.IPNet, id, ifname string) (net.IP, error) {
	if id == "" || ifname == "" {
		return nil, fmt.Errorf("allocate: container ID and interface name are required")
	}
	first, last, err := usableRange(subnet)
	if err != nil {
		return nil, err
	}
	unlock, err := s.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	if ip, err := s.lookupLocked(id, ifname); err != nil || ip != nil {
		if ip != nil && !subnet.Contains(ip) {
			return nil, fmt.Errorf("container %s/%s holds %s, outside the node's pod CIDR %s; delete it first", id, ifname, ip, subnet)
		}
		return ip, err
	}
	start := first
	if data, err := os.ReadFile(filepath.Join(s.dir, "last_reserved_ip")); err == nil {
		if prev := net.ParseIP(strings.TrimSpace(string(data))).To4(); prev != nil {
			if p := ipToU32(prev); p >= first && p < last {
				start = p + 1
			}
		}
	}
	size := last - first + 1
	for i := uint32(0); i < size; i++ {
		cand := first + (start-first+i)%size
		ip := u32ToIP(cand)
		path := s.addrPath(ip)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reserve %s: %w", ip, err)
		}
		_, werr := f.WriteString(owner(id, ifname))
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr == nil {
			werr = writeFile(s.indexPath(id, ifname), []byte(ip.String()+"\n"))
		}
		if werr != nil {
			os.Remove(path)
			return nil, fmt.Errorf("reserve %s: %w", ip, werr)
		}
		// Only a hint for the next search; losing it costs nothing.
		_ = writeFile(filepath.Join(s.dir, "last_reserved_ip"), []byte(ip.String()+"\n"))
		return ip, nil
	}
	return nil, fmt.Errorf("%w in %s (%d addresses, all allocated)", ErrPoolFull, subnet, size)
}

// Lookup returns the address of (id, ifname), or nil if it has none.
func (s *Store) Lookup(id, ifname string) (net.IP, error) {
	unlock, err := s.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	return s.lookupLocked(id, ifname)
}

// Release frees the address of (id, ifname) and returns it, or nil if it had none; releasing twice
// is not an error, as CNI requires of DEL.
func (s *Store) Release(id, ifname string) (net.IP, error) {
	unlock, err := s.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	ip, err := s.lookupLocked(id, ifname)
	if err != nil {
		return nil, err
	}
	if ip != nil {
		if err := os.Remove(s.addrPath(ip)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("release %s: %w", ip, err)
		}
	}
	if err := os.Remove(s.indexPath(id, ifname)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return ip, fmt.Errorf("release index of %s/%s: %w", id, ifname, err)
	}
	return ip, nil
}

// Allocated counts reserved addresses (for tests and diagnostics).
func (s *Store) Allocated() (int, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		if net.ParseIP(e.Name()) != nil {
			n++
		}
	}
	return n, nil
}

// Gateway is the subnet's first address, which the bridge holds.
func Gateway(subnet *net.IPNet) net.IP {
	return u32ToIP(ipToU32(subnet.IP.Mask(subnet.Mask).To4()) + 1)
}

func usableRange(subnet *net.IPNet) (first, last uint32, err error) {
	if subnet == nil || subnet.IP.To4() == nil {
		return 0, 0, fmt.Errorf("pod subnet %v is not IPv4", subnet)
	}
	ones, bits := subnet.Mask.Size()
	if bits != 32 || ones > 29 {
		return 0, 0, fmt.Errorf("pod subnet %s is too small", subnet)
	}
	network := ipToU32(subnet.IP.Mask(subnet.Mask).To4())
	broadcast := network | (1<<(32-ones) - 1)
	// network (the node's VTEP address) and network+1 (the bridge gateway) are taken.
	return network + 2, broadcast - 1, nil
}

func ipToU32(ip net.IP) uint32 { return binary.BigEndian.Uint32(ip.To4()) }

func u32ToIP(v uint32) net.IP {
	ip := make(net.IP, 4)
	binary.BigEndian.PutUint32(ip, v)
	return ip
}
