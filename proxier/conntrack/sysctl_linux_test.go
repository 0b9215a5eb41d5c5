package conntrack

import (
	"github.com/switchyard/switchyard/internal/sysctl"

	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/internal/netnstest"
)

// TestProcInChildNamespace applies kube-proxy's defaults (plus the UDP timeouts) through
// the real /proc/sys inside a throwaway network namespace, where the timeouts are the namespace's
// own but nf_conntrack_max and the hash table size are global and read-only: Apply sets the
// timeouts, names the global ones it cannot set, and does not stop at them (kube-proxy would exit here).
func TestProcInChildNamespace(t *testing.T) {
	netnstest.Require(t)
	ns := netnstest.New(t, "ctsys")
	var k sysctl.Proc
	// Guard: this test must not change the node. Rewriting the current values would be harmless;
	// if either global parameter is writable from here, stop before Apply raises it.
	writable, hashsize := "", ""
	err := ns.Do(func() error {
		for _, name := range []string{SysctlMax, ParamHashsize} {
			cur, err := k.Get(name)
			if err != nil {
				return err
			}
			if err := k.Set(name, cur); err == nil {
				writable = name
			}
			hashsize = cur
		}
		return nil
	})
	if err != nil {
		t.Skipf("nf_conntrack is not loaded: %v", err)
	}
	if writable != "" {
		t.Skipf("%s is writable from a child network namespace on this kernel; not raising it", writable)
	}
	s := Settings{MaxPerCore: 1 << 20, TCPEstablishedTimeout: 24 * time.Hour, TCPCloseWaitTimeout: time.Hour,
		TCPBeLiberal: true, UDPTimeout: 17 * time.Second, UDPStreamTimeout: 170 * time.Second}
	var unset []Unset
	if err := ns.Do(func() error { unset = Apply(k, s, 2); return nil }); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, u := range unset {
		names = append(names, u.String())
	}
	// The hash table is grown only when smaller than a quarter of the max (1Mi, the cap).
	wantUnset := []string{SysctlMax}
	if n, _ := strconv.Atoi(hashsize); n < 1<<18 {
		wantUnset = append(wantUnset, ParamHashsize)
	}
	var gotUnset []string
	for _, u := range unset {
		gotUnset = append(gotUnset, u.Name)
	}
	if !slices.Equal(gotUnset, wantUnset) {
		t.Fatalf("unset:\n%s", strings.Join(names, "\n"))
	}
	t.Logf("unset, as the daemon reports them:\n%s", strings.Join(names, "\n"))
	want := map[string]string{SysctlTCPTimeoutEstablished: "86400", SysctlTCPTimeoutCloseWait: "3600", SysctlTCPBeLiberal: "1",
		SysctlUDPTimeout: "17", SysctlUDPTimeoutStream: "170"}
	_ = ns.Do(func() error {
		for name, v := range want {
			if got, err := k.Get(name); err != nil || got != v {
				t.Errorf("%s = %q (%v), want %q", name, got, err, v)
			}
		}
		return nil
	})
	// And the node's own namespace kept its values.
	if got, _ := k.Get(SysctlUDPTimeout); got == "17" {
		t.Errorf("the node's %s changed", SysctlUDPTimeout)
	}
}
