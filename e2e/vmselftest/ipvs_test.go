//go:build vmselftest

// Package selftest proves the hack/vm guest kernel from Go, the way the IPVS backend's real-kernel
// tests will use it: IPVS over netlink (github.com/moby/ipvs) inside throwaway namespaces, and a real
// TCP connection through a virtual server. It builds only with -tags vmselftest, because this
// machine's own kernel has no IPVS; hack/vm/selftest.sh --go builds it and runs it in the VM.
package vmselftest

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/ipvs"
	"golang.org/x/sys/unix"

	"github.com/switchyard/switchyard/internal/netnstest"
)

const (
	vip         = "10.96.0.10"
	backendIP   = "10.244.0.2"
	backendPort = 8080
	reply       = "hello from the backend"
)

func openIPVS(t *testing.T, ns *netnstest.NS) *ipvs.Handle {
	t.Helper()
	h, err := ipvs.New(filepath.Join("/run/netns", ns.Name))
	if err != nil {
		t.Fatalf("ipvs handle in %s: %v", ns.Name, err)
	}
	t.Cleanup(h.Close)
	return h
}

func tcpService(addr string, port uint16, sched string) *ipvs.Service {
	return &ipvs.Service{
		Address:       net.ParseIP(addr).To4(),
		Protocol:      unix.IPPROTO_TCP,
		Port:          port,
		SchedName:     sched,
		AddressFamily: unix.AF_INET,
		Netmask:       0xffffffff,
	}
}

// TestVMKernelIPVSForwardsTCP builds the kube-proxy IPVS shape in a client namespace (VIP on a
// dummy kube-ipvs0, a masquerading virtual server) with the backend in a second namespace across a
// veth, and checks that a connection to the VIP reaches the backend and that IPVS counted it.
func TestVMKernelIPVSForwardsTCP(t *testing.T) {
	netnstest.Require(t)
	client := netnstest.New(t, "cli")
	server := netnstest.New(t, "srv")
	netnstest.Veth(t, client, "eth0", "10.244.0.1/24", server, "eth0", backendIP+"/24")
	client.MustRun(t, "ip", "link", "add", "kube-ipvs0", "type", "dummy")
	client.MustRun(t, "ip", "addr", "add", vip+"/32", "dev", "kube-ipvs0")
	// A local client's source address is the VIP itself; the backend routes replies back over the veth,
	// where IPVS rewrites their source from the backend to the VIP.
	server.MustRun(t, "ip", "route", "add", "10.96.0.0/16", "via", "10.244.0.1")

	server.ServeTCP(t, "tcp", fmt.Sprintf("%s:%d", backendIP, backendPort), func(c net.Conn) { io.WriteString(c, reply) })

	h := openIPVS(t, client)
	svc := tcpService(vip, 80, "rr")
	if err := h.NewService(svc); err != nil {
		t.Fatalf("add virtual server %s:80: %v", vip, err)
	}
	dst := &ipvs.Destination{
		Address:         net.ParseIP(backendIP).To4(),
		Port:            backendPort,
		Weight:          1,
		ConnectionFlags: ipvs.ConnectionFlagMasq,
		AddressFamily:   unix.AF_INET,
	}
	if err := h.NewDestination(svc, dst); err != nil {
		t.Fatalf("add real server: %v", err)
	}

	svcs, err := h.GetServices()
	if err != nil {
		t.Fatalf("list virtual servers: %v", err)
	}
	if len(svcs) != 1 || !svcs[0].Address.Equal(svc.Address) || svcs[0].Port != 80 || svcs[0].SchedName != "rr" {
		t.Fatalf("kernel lists %d virtual servers, want exactly %s:80 rr: %+v", len(svcs), vip, svcs)
	}
	dsts, err := h.GetDestinations(svcs[0])
	if err != nil {
		t.Fatalf("list real servers: %v", err)
	}
	if len(dsts) != 1 || !dsts[0].Address.Equal(dst.Address) || dsts[0].Port != backendPort {
		t.Fatalf("kernel lists real servers %+v, want exactly %s:%d", dsts, backendIP, backendPort)
	}

	// The bound only keeps a broken setup from hanging the run; emulation makes no speed promise.
	c, err := client.Dial("tcp", vip+":80", time.Minute)
	if err != nil {
		t.Fatalf("connect to %s:80 through IPVS: %v", vip, err)
	}
	defer c.Close()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read through IPVS from %s:80: %v", vip, err)
	}
	if string(got) != reply {
		t.Fatalf("read %q through the virtual server, want %q", got, reply)
	}

	// IPVS's own connection table remembers the flow (VIP:80 to backend:8080) for minutes after it
	// closes. Its service counters are not checked: the kernel folds them in on a 2 s estimator tick.
	conns := client.MustRun(t, "cat", "/proc/net/ip_vs_conn")
	if !hasIPVSConn(conns, vip, 80, backendIP, backendPort) {
		t.Fatalf("/proc/net/ip_vs_conn in %s has no %s:80 -> %s:%d entry:\n%s", client.Name, vip, backendIP, backendPort, conns)
	}
}

// hasIPVSConn reports whether a /proc/net/ip_vs_conn dump (hex addresses and ports) holds a TCP
// connection to vip:vport that IPVS sent to dst:dport.
func hasIPVSConn(dump, vip string, vport uint16, dst string, dport uint16) bool {
	hexIP := func(s string) string { return fmt.Sprintf("%X", []byte(net.ParseIP(s).To4())) }
	hexPort := func(p uint16) string { return fmt.Sprintf("%04X", p) }
	for _, line := range strings.Split(dump, "\n") {
		f := strings.Fields(line)
		if len(f) >= 7 && f[0] == "TCP" && f[3] == hexIP(vip) && f[4] == hexPort(vport) &&
			f[5] == hexIP(dst) && f[6] == hexPort(dport) {
			return true
		}
	}
	return false
}

// TestVMKernelIPVSSchedulers creates a virtual server with each scheduler kube-proxy accepts and
// checks the kernel reports it back, which needs each ip_vs_<name> module to be loadable.
func TestVMKernelIPVSSchedulers(t *testing.T) {
	netnstest.Require(t)
	ns := netnstest.New(t, "sched")
	h := openIPVS(t, ns)
	scheds := []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos"}
	uname := unix.Utsname{}
	if err := unix.Uname(&uname); err != nil {
		t.Fatal(err)
	}
	release := unix.ByteSliceToString(uname.Release[:])
	for i, sched := range scheds {
		t.Run(sched, func(t *testing.T) {
			if sched == "twos" {
				ko := filepath.Join("/lib/modules", release, "kernel/net/netfilter/ipvs/ip_vs_twos.ko")
				if _, err := os.Stat(ko); err != nil {
					t.Skipf("kernel %s has no ip_vs_twos (added in Linux 6.7)", release)
				}
			}
			svc := tcpService(fmt.Sprintf("10.96.1.%d", i+1), 80, sched)
			if err := h.NewService(svc); err != nil {
				t.Fatalf("add virtual server with scheduler %s: %v", sched, err)
			}
			got, err := h.GetService(svc)
			if err != nil {
				t.Fatalf("read back virtual server: %v", err)
			}
			if got.SchedName != sched {
				t.Fatalf("kernel reports scheduler %q, want %q", got.SchedName, sched)
			}
		})
	}
}
