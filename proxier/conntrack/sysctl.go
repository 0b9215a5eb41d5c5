package conntrack

import (
	"github.com/switchyard/switchyard/internal/sysctl"

	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
)

// The kernel parameters kube-proxy's --conntrack-* flags set. Sysctl names are /proc/sys paths;
// the hash table size is a module parameter under /sys, so its name is absolute.
const (
	SysctlMax                   = "net/netfilter/nf_conntrack_max"
	SysctlTCPTimeoutEstablished = "net/netfilter/nf_conntrack_tcp_timeout_established"
	SysctlTCPTimeoutCloseWait   = "net/netfilter/nf_conntrack_tcp_timeout_close_wait"
	SysctlTCPBeLiberal          = "net/netfilter/nf_conntrack_tcp_be_liberal"
	SysctlUDPTimeout            = "net/netfilter/nf_conntrack_udp_timeout"
	SysctlUDPTimeoutStream      = "net/netfilter/nf_conntrack_udp_timeout_stream"
	ParamHashsize               = "/sys/module/nf_conntrack/parameters/hashsize"
)

// maxLimit caps max-per-core x CPUs, as kube-proxy v1.37 does, so that a many-core node does not
// reserve a huge table.
const maxLimit = 1 << 20

// Settings are kube-proxy's conntrack settings (KubeProxyConntrackConfiguration). A zero duration
// or MaxPerCore leaves that parameter as it is, as in kube-proxy.
type Settings struct {
	MaxPerCore            int
	Min                   int
	TCPEstablishedTimeout time.Duration
	TCPCloseWaitTimeout   time.Duration
	TCPBeLiberal          bool
	UDPTimeout            time.Duration
	UDPStreamTimeout      time.Duration
}

// Max is the nf_conntrack_max that s asks for on a node with numCPU CPUs, 0 for "leave it": as
// kube-proxy, MaxPerCore x CPUs capped at 2^20, else Min when that is larger.
func (s Settings) Max(numCPU int) int {
	if s.MaxPerCore <= 0 {
		return 0
	}
	scaled := s.MaxPerCore * numCPU
	if scaled > maxLimit {
		return maxLimit
	}
	return max(scaled, s.Min)
}

// Unset is a parameter Apply could not set, and why.
type Unset struct {
	Name, Value string
	Err         error
}

func (u Unset) String() string {
	return fmt.Sprintf("%s=%s: %s", u.Name, u.Value, reason(u.Err))
}

// reason says why a write failed in words an operator can act on.
func reason(err error) string {
	switch {
	case errors.Is(err, syscall.EROFS):
		return "read-only (an unprivileged container's /proc/sys and /sys are; set it on the node, e.g. in the kernel-setup init container)"
	case errors.Is(err, os.ErrNotExist):
		return "does not exist (nf_conntrack not loaded, or not per network namespace)"
	case errors.Is(err, syscall.EOPNOTSUPP):
		return "not supported here (the hash table size can be changed only from the node's initial network namespace)"
	case errors.Is(err, os.ErrPermission):
		return "permission denied (nf_conntrack_max and hashsize can be set only from the node's initial network namespace, and all need CAP_NET_ADMIN)"
	default:
		return err.Error()
	}
}

// Apply sets what s asks for, as kube-proxy's start-up does: nf_conntrack_max only raised, the
// hash table grown to a quarter of the max when smaller, and each timeout (and be_liberal) written
// when it differs. Where kube-proxy exits on the first failure, Apply goes on and returns every
// parameter it could not set, for the caller to report once: the proxy works without them.
func Apply(sys sysctl.Interface, s Settings, numCPU int) []Unset {
	var unset []Unset
	set := func(name string, value int, onlyRaise bool) {
		v := strconv.Itoa(value)
		if cur, err := sys.Get(name); err == nil {
			n, perr := strconv.Atoi(cur)
			if perr == nil && (n == value || onlyRaise && n > value) {
				return
			}
		}
		if err := sys.Set(name, v); err != nil {
			unset = append(unset, Unset{Name: name, Value: v, Err: err})
		}
	}
	if m := s.Max(numCPU); m > 0 {
		set(SysctlMax, m, true)
		set(ParamHashsize, m/4, true)
	}
	seconds := func(name string, d time.Duration) {
		if d > 0 {
			set(name, int(d/time.Second), false)
		}
	}
	seconds(SysctlTCPTimeoutEstablished, s.TCPEstablishedTimeout)
	seconds(SysctlTCPTimeoutCloseWait, s.TCPCloseWaitTimeout)
	if s.TCPBeLiberal {
		set(SysctlTCPBeLiberal, 1, false)
	}
	seconds(SysctlUDPTimeout, s.UDPTimeout)
	seconds(SysctlUDPTimeoutStream, s.UDPStreamTimeout)
	return unset
}
