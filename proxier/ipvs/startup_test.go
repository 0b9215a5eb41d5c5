package ipvs

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/switchyard/switchyard/proxier/ipvs/ipvstest"
	"github.com/switchyard/switchyard/proxier/model"
)

func TestSchedulerValidation(t *testing.T) {
	for _, s := range Schedulers {
		o := DefaultOptions()
		o.Scheduler = s
		if err := o.Validate(); err != nil {
			t.Errorf("scheduler %q rejected: %v", s, err)
		}
	}
	for _, s := range []string{"roundrobin", "RR", "wrr ", "maglev"} {
		o := DefaultOptions()
		o.Scheduler = s
		err := o.Validate()
		if err == nil || !strings.Contains(err.Error(), "--ipvs-scheduler") || !strings.Contains(err.Error(), "twos") {
			t.Errorf("scheduler %q: %v; want a clear rejection listing the schedulers", s, err)
		}
	}
	// The fake knows the kernel's schedulers, every one the backend accepts ...
	for _, s := range Schedulers {
		svc := mobyService(vsKey{ip("10.96.0.10"), model.TCP, 80}, s, false, 0)
		if err := ipvstest.NewFakeIPVS().NewService(svc); err != nil {
			t.Errorf("the fake IPVS refuses scheduler %q: %v", s, err)
		}
	}
	// ... and refuses unknown schedulers as the kernel would, so a sync could never hide a bad one.
	k := newTestKernel()
	o := DefaultOptions()
	o.Scheduler = "bogus"
	if _, err := New(o, k.deps()); err == nil {
		t.Errorf("New accepted scheduler bogus")
	}
}

func TestLocalInterfaceValidation(t *testing.T) {
	for _, set := range []func(*Options){
		func(o *Options) { o.BridgeInterface, o.InterfaceNamePrefix = "cni0", "veth" },
		func(o *Options) { o.BridgeInterface = "a-bridge-too-long" },
		func(o *Options) { o.InterfaceNamePrefix = "fifteen-chars-x" },
		func(o *Options) { o.BridgeInterface = "cni0 -j ACCEPT" },
	} {
		o := DefaultOptions()
		set(&o)
		if err := o.Validate(); err == nil {
			t.Errorf("bridge %q, prefix %q: accepted", o.BridgeInterface, o.InterfaceNamePrefix)
		}
	}
	o := DefaultOptions()
	o.InterfaceNamePrefix = "fourteen-chars"
	if err := o.Validate(); err != nil {
		t.Errorf("a 14-character prefix: %v", err)
	}
}

func TestSysctlsAndTimeouts(t *testing.T) {
	k := newTestKernel()
	o := testOptions()
	o.TCPTimeout, o.UDPTimeout = 900*time.Second, 10*time.Second
	if _, err := New(o, k.deps()); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"net/ipv4/vs/conntrack", "net/ipv4/vs/expire_nodest_conn", "net/ipv4/vs/expire_quiescent_template"} {
		if v := k.sysctl.Values[name]; v != "1" {
			t.Errorf("%s = %s, want 1", name, v)
		}
	}
	if k.sysctl.Values["net/ipv4/conf/all/arp_ignore"] != "0" {
		t.Errorf("arp_ignore changed without --ipvs-strict-arp")
	}
	if k.ipvs.Config.TimeoutTCP != 900*time.Second || k.ipvs.Config.TimeoutUDP != 10*time.Second || k.ipvs.Config.TimeoutTCPFin != 0 {
		t.Errorf("IPVS timeouts: %+v", k.ipvs.Config)
	}

	k = newTestKernel()
	o.StrictARP = true
	if _, err := New(o, k.deps()); err != nil {
		t.Fatal(err)
	}
	if k.sysctl.Values["net/ipv4/conf/all/arp_ignore"] != "1" || k.sysctl.Values["net/ipv4/conf/all/arp_announce"] != "2" {
		t.Errorf("strict ARP: arp_ignore=%s arp_announce=%s", k.sysctl.Values["net/ipv4/conf/all/arp_ignore"], k.sysctl.Values["net/ipv4/conf/all/arp_announce"])
	}

	// No permission: a clear error naming the sysctl.
	k = newTestKernel()
	k.sysctl.ReadOnly["net/ipv4/vs/conntrack"] = true
	_, err := New(o, k.deps())
	if err == nil || !errors.Is(err, os.ErrPermission) || !strings.Contains(err.Error(), "net/ipv4/vs/conntrack") {
		t.Errorf("read-only sysctl: %v", err)
	}
	// Already right: nothing is written, so a read-only /proc/sys with correct values is fine.
	k.sysctl.Values["net/ipv4/vs/conntrack"] = "1"
	if _, err := New(o, k.deps()); err != nil {
		t.Errorf("read-only sysctl already at the wanted value: %v", err)
	}
}

func TestCheckKernel(t *testing.T) {
	found := func(string) (*netlink.GenlFamily, error) { return &netlink.GenlFamily{ID: 30, Name: "IPVS"}, nil }
	missing := func(string) (*netlink.GenlFamily, error) { return nil, unix.ENOENT }
	if err := CheckKernel(found, nil); err != nil {
		t.Errorf("kernel with IPVS: %v", err)
	}
	loaded := false
	afterLoad := func(string) (*netlink.GenlFamily, error) {
		if loaded {
			return &netlink.GenlFamily{Name: "IPVS"}, nil
		}
		return nil, unix.ENOENT
	}
	if err := CheckKernel(afterLoad, func(m string) error { loaded = m == "ip_vs"; return nil }); err != nil {
		t.Errorf("IPVS as a loadable module: %v", err)
	}
	err := CheckKernel(missing, func(string) error { return errors.New("modprobe: FATAL: Module ip_vs not found") })
	assertNoIPVSError(t, err)
}

func assertNoIPVSError(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, ErrNoIPVS) {
		t.Fatalf("got %v, want ErrNoIPVS", err)
	}
	for _, want := range []string{"CONFIG_IP_VS", "ip_vs", "--proxy-mode=iptables"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}

// TestCheckKernelHere runs the real check on this machine's kernel, which has no IPVS (docs/measurements.md, "Kernel features"):
// it must fail with the clear error. Where the kernel has IPVS (the VM), it must pass.
func TestCheckKernelHere(t *testing.T) {
	_, statErr := os.Stat("/proc/net/ip_vs")
	err := CheckKernel(netlink.GenlFamilyGet, nil)
	if statErr == nil {
		if err != nil {
			t.Errorf("kernel has /proc/net/ip_vs but the check failed: %v", err)
		}
		return
	}
	assertNoIPVSError(t, err)
	t.Logf("this kernel: %v", err)
}

func TestMissingDummySupport(t *testing.T) {
	k := newTestKernel()
	k.links.NoDummy = true
	p := newTestProxier(t, k, testOptions())
	err := p.Sync(fixture())
	if err == nil || !strings.Contains(err.Error(), "CONFIG_DUMMY") || !strings.Contains(err.Error(), DummyDevice) {
		t.Errorf("kernel without dummy devices: %v", err)
	}
	if len(k.ipvs.Services) != 0 {
		t.Errorf("virtual servers programmed without a device for their addresses")
	}
}
