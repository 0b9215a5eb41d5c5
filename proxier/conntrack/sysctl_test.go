package conntrack

import (
	"fmt"
	"os"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchyard/switchyard/internal/sysctltest"
)

// kubeProxyDefaults are KubeProxyConntrackConfiguration's defaults.
var kubeProxyDefaults = Settings{MaxPerCore: 32 * 1024, Min: 128 * 1024, TCPEstablishedTimeout: 24 * time.Hour, TCPCloseWaitTimeout: time.Hour}

// aKernel is a fresh 6.x kernel's conntrack parameters on a node with 2 CPUs and 8 GiB.
func aKernel() map[string]string {
	return map[string]string{
		SysctlMax: "65536", ParamHashsize: "16384",
		SysctlTCPTimeoutEstablished: "432000", SysctlTCPTimeoutCloseWait: "60", SysctlTCPBeLiberal: "0",
		SysctlUDPTimeout: "30", SysctlUDPTimeoutStream: "120",
	}
}

func TestMax(t *testing.T) {
	for _, tc := range []struct {
		s      Settings
		cpus   int
		want   int
		reason string
	}{
		{kubeProxyDefaults, 2, 128 * 1024, "the minimum wins over 2 x 32Ki"},
		{kubeProxyDefaults, 8, 8 * 32 * 1024, "per core x CPUs wins over the minimum"},
		{kubeProxyDefaults, 64, 1 << 20, "capped at 1Mi"},
		{Settings{MaxPerCore: 0, Min: 128 * 1024}, 8, 0, "0 per core leaves the max alone, whatever the minimum"},
		{Settings{MaxPerCore: 1000}, 4, 4000, "no minimum"},
	} {
		if got := tc.s.Max(tc.cpus); got != tc.want {
			t.Errorf("%s: Max(%d) = %d, want %d", tc.reason, tc.cpus, got, tc.want)
		}
	}
}

// TestApplyDefaults: kube-proxy's defaults on a 2-CPU node raise the max to 128Ki and the hash
// table to a quarter of it, and set the two TCP timeouts; the UDP ones and be_liberal stay.
// Applying again changes nothing.
func TestApplyDefaults(t *testing.T) {
	sys := sysctltest.New(aKernel())
	if unset := Apply(sys, kubeProxyDefaults, 2); len(unset) != 0 {
		t.Fatalf("unset %v", unset)
	}
	want := aKernel()
	want[SysctlMax], want[ParamHashsize] = "131072", "32768"
	want[SysctlTCPTimeoutEstablished], want[SysctlTCPTimeoutCloseWait] = "86400", "3600"
	if !reflect.DeepEqual(sys.Values, want) {
		t.Fatalf("kernel\n%v\nwant\n%v", sys.Values, want)
	}
	// Nothing differs now, so nothing is written: read-only keys would not matter.
	for k := range sys.Values {
		sys.ReadOnly[k] = true
	}
	if unset := Apply(sys, kubeProxyDefaults, 2); len(unset) != 0 {
		t.Fatalf("second apply wrote again: %v", unset)
	}
}

// TestApplyOnlyRaises: a max (and hash table) already larger stays; timeouts are set either way.
func TestApplyOnlyRaises(t *testing.T) {
	k := aKernel()
	k[SysctlMax], k[ParamHashsize] = "1000000", "262144"
	sys := sysctltest.New(k)
	s := Settings{MaxPerCore: 1000, TCPBeLiberal: true, UDPTimeout: 10 * time.Second, UDPStreamTimeout: 3 * time.Minute, TCPEstablishedTimeout: time.Minute}
	if unset := Apply(sys, s, 4); len(unset) != 0 {
		t.Fatalf("unset %v", unset)
	}
	want := aKernel()
	want[SysctlMax], want[ParamHashsize] = "1000000", "262144"
	want[SysctlTCPBeLiberal], want[SysctlUDPTimeout], want[SysctlUDPTimeoutStream] = "1", "10", "180"
	want[SysctlTCPTimeoutEstablished] = "60"
	if !reflect.DeepEqual(sys.Values, want) {
		t.Fatalf("kernel\n%v\nwant\n%v", sys.Values, want)
	}
}

// TestApplyZeroLeavesAlone: zeros (and be_liberal false) write nothing, even where the kernel has
// other values.
func TestApplyZeroLeavesAlone(t *testing.T) {
	sys := sysctltest.New(aKernel())
	if unset := Apply(sys, Settings{Min: 1 << 20}, 2); len(unset) != 0 {
		t.Fatalf("unset %v", unset)
	}
	if !reflect.DeepEqual(sys.Values, aKernel()) {
		t.Fatalf("kernel %v", sys.Values)
	}
}

// TestApplyGoesOnPastFailures: in a child network namespace nf_conntrack_max cannot be written
// and the hash table belongs to /sys; in an unprivileged container nothing can. Apply sets what it
// can and names what it could not, with why.
func TestApplyGoesOnPastFailures(t *testing.T) {
	sys := sysctltest.New(aKernel())
	sys.ReadOnly[SysctlMax] = true
	delete(sys.Values, ParamHashsize)
	unset := Apply(sys, kubeProxyDefaults, 2)
	var names []string
	for _, u := range unset {
		names = append(names, u.Name)
	}
	if want := []string{SysctlMax, ParamHashsize}; !reflect.DeepEqual(names, want) {
		t.Fatalf("unset %v, want %v", unset, want)
	}
	if !strings.Contains(unset[0].String(), "permission denied") || !strings.Contains(unset[1].String(), "does not exist") {
		t.Errorf("reasons %v", unset)
	}
	if sys.Values[SysctlTCPTimeoutEstablished] != "86400" || sys.Values[SysctlTCPTimeoutCloseWait] != "3600" {
		t.Errorf("the timeouts were not set after the failures: %v", sys.Values)
	}
}

func TestUnsetReadOnlyReason(t *testing.T) {
	u := Unset{Name: SysctlMax, Value: "1", Err: fmt.Errorf("open /proc/sys/x: %w", &os.PathError{Op: "open", Path: "x", Err: syscall.EROFS})}
	if !strings.Contains(u.String(), "read-only") {
		t.Errorf("%s", u)
	}
}

func TestUnsetHashsizeInChildNamespaceReason(t *testing.T) {
	u := Unset{Name: ParamHashsize, Value: "1", Err: &os.PathError{Op: "write", Path: ParamHashsize, Err: syscall.EOPNOTSUPP}}
	if !strings.Contains(u.String(), "initial network namespace") {
		t.Errorf("%s", u)
	}
}
