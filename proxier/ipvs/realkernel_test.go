package ipvs

import (
	"github.com/switchyard/switchyard/internal/sysctl"

	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	mobyipvs "github.com/moby/ipvs"
	"golang.org/x/sys/unix"

	utiliptables "github.com/switchyard/switchyard/internal/iptables"
	"github.com/switchyard/switchyard/internal/iptables/iptablestest"
	"github.com/switchyard/switchyard/internal/netnstest"
	"github.com/switchyard/switchyard/proxier/conntrack"
	"github.com/switchyard/switchyard/proxier/model"
)

// EnvIPVSKernel enables the real-kernel tests. This machine's kernel has no IPVS, so they run inside
// hack/vm's qemu guest, which sets it:
//
//	CGO_ENABLED=0 go test -c -o ipvs.test ./proxier/ipvs
//	hack/vm/run.sh --env SWITCHYARD_PRIVILEGED=1 --env SWITCHYARD_IPVS_KERNEL=1 ./ipvs.test -test.run TestRealKernel -test.v
const EnvIPVSKernel = "SWITCHYARD_IPVS_KERNEL"

func requireIPVSKernelB(t testing.TB) { requireIPVSKernelTB(t) }

func requireIPVSKernel(t *testing.T) { requireIPVSKernelTB(t) }

func requireIPVSKernelTB(t testing.TB) {
	t.Helper()
	if os.Getenv(EnvIPVSKernel) != "1" {
		t.Skipf("needs a kernel with IPVS: set %s=1 inside hack/vm's guest (see realkernel_test.go)", EnvIPVSKernel)
	}
	netnstest.Require(t)
	if _, err := os.Stat("/proc/net/ip_vs"); err != nil {
		t.Fatalf("%s=1 but this kernel has no IPVS: %v", EnvIPVSKernel, err)
	}
}

// nsIptables programs the iptables (whichever variant plain "iptables" is) of a test namespace.
func nsIptables(t testing.TB, ns *netnstest.NS) *utiliptables.Exec {
	t.Helper()
	return iptablestest.ExecIn(t, ns, model.IPv4, utiliptables.VariantDefault)
}

// nsSysctl reads and writes /proc/sys/net from a thread inside the namespace, which is what the
// kernel scopes those files by.
type nsSysctl struct{ ns *netnstest.NS }

func (x nsSysctl) Get(name string) (v string, err error) {
	err = x.ns.Do(func() error { v, err = sysctl.Proc{}.Get(name); return err })
	return v, err
}

func (x nsSysctl) Set(name, value string) error {
	return x.ns.Do(func() error { return sysctl.Proc{}.Set(name, value) })
}

// backend is a TCP and UDP server in its own namespace that answers with its name and, over TCP, the
// source address it sees (to tell masqueraded connections from source-preserving ones).
type backend struct {
	name string
	ns   *netnstest.NS
	ip   netip.Addr
}

func startBackend(t *testing.T, b *backend, tcpPorts, udpPorts []int) {
	t.Helper()
	for _, p := range tcpPorts {
		b.ns.ServeTCP(t, "tcp4", fmt.Sprintf("%s:%d", b.ip, p), func(c net.Conn) {
			src, _ := netip.ParseAddrPort(c.RemoteAddr().String())
			fmt.Fprintf(c, "%s %s\n", b.name, src.Addr())
			io.Copy(c, c) // echo until the client closes
		})
	}
	for _, p := range udpPorts {
		b.ns.ServeUDP(t, "udp4", fmt.Sprintf("%s:%d", b.ip, p), func(net.Addr) []byte { return []byte(b.name) })
	}
}

// dialTCP connects from inside ns and returns the connection and the backend's greeting.
func dialTCP(t *testing.T, ns *netnstest.NS, addr string) (net.Conn, *bufio.Reader, string) {
	t.Helper()
	c, err := ns.Dial("tcp4", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("connect to %s from %s: %v", addr, ns.Name, err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		c.Close()
		t.Fatalf("read greeting from %s: %v", addr, err)
	}
	return c, r, strings.TrimSpace(line)
}

func askTCP(t *testing.T, ns *netnstest.NS, addr string) string {
	t.Helper()
	name, _ := askTCPSource(t, ns, addr)
	return name
}

// askTCPSource returns the backend's name and the client address it saw.
func askTCPSource(t *testing.T, ns *netnstest.NS, addr string) (string, netip.Addr) {
	t.Helper()
	c, _, greeting := dialTCP(t, ns, addr)
	c.Close()
	name, src, _ := strings.Cut(greeting, " ")
	a, err := netip.ParseAddr(src)
	if err != nil {
		t.Fatalf("greeting %q from %s: %v", greeting, addr, err)
	}
	return name, a
}

func askUDP(t *testing.T, ns *netnstest.NS, addr string) string {
	t.Helper()
	c, err := ns.Dial("udp4", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 100)
	for try := 0; try < 5; try++ {
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write([]byte("hi")); err != nil {
			t.Fatal(err)
		}
		n, err := c.Read(buf)
		if err == nil {
			return string(buf[:n])
		}
	}
	t.Fatalf("no UDP answer from %s", addr)
	return ""
}

// procRealServer is one real server line of /proc/net/ip_vs.
type procRealServer struct {
	Weight, Active, Inactive int
}

// readProcIPVS parses /proc/net/ip_vs inside ns into "PROTO ip:port" -> real server -> counters.
func readProcIPVS(t *testing.T, ns *netnstest.NS) map[string]map[string]procRealServer {
	t.Helper()
	out := ns.MustRun(t, "cat", "/proc/net/ip_vs")
	res := map[string]map[string]procRealServer{}
	var cur string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && (f[0] == "TCP" || f[0] == "UDP" || f[0] == "SCTP"):
			cur = f[0] + " " + hexAddrPort(t, f[1])
			res[cur] = map[string]procRealServer{}
		case len(f) == 6 && f[0] == "->" && cur != "":
			w, _ := strconv.Atoi(f[3])
			a, _ := strconv.Atoi(f[4])
			i, _ := strconv.Atoi(f[5])
			res[cur][hexAddrPort(t, f[1])] = procRealServer{w, a, i}
		}
	}
	return res
}

func hexAddrPort(t *testing.T, s string) string {
	t.Helper()
	hp := strings.SplitN(s, ":", 2)
	b, err := hex.DecodeString(hp[0])
	if err != nil || len(b) != 4 {
		t.Fatalf("bad address %q in /proc/net/ip_vs", s)
	}
	port, err := strconv.ParseUint(hp[1], 16, 16)
	if err != nil {
		t.Fatalf("bad port %q in /proc/net/ip_vs", s)
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b)), uint16(port)).String()
}

// TestRealKernel programs services through the real backend in a node namespace, reads them back from
// the kernel, and sends TCP and UDP from the node and from a client namespace through a ClusterIP and
// a NodePort to backends in their own namespaces. Then it removes endpoints (graceful TCP, immediate
// UDP), checks that unchanged syncs write nothing, and that Cleanup leaves the namespace clean.
func TestRealKernel(t *testing.T) {
	requireIPVSKernel(t)
	node := netnstest.New(t, "node")
	client := netnstest.New(t, "cli")
	b1 := &backend{name: "b1", ns: netnstest.New(t, "b1"), ip: ip("10.244.1.2")}
	b2 := &backend{name: "b2", ns: netnstest.New(t, "b2"), ip: ip("10.244.2.2")}
	netnstest.Veth(t, node, "eth0", "192.168.50.10/24", client, "eth0", "192.168.50.2/24")
	netnstest.Veth(t, node, "vb1", "10.244.1.1/24", b1.ns, "eth0", "10.244.1.2/24")
	netnstest.Veth(t, node, "vb2", "10.244.2.1/24", b2.ns, "eth0", "10.244.2.2/24")
	client.MustRun(t, "ip", "route", "add", "default", "via", "192.168.50.10")
	b1.ns.MustRun(t, "ip", "route", "add", "default", "via", "10.244.1.1")
	b2.ns.MustRun(t, "ip", "route", "add", "default", "via", "10.244.2.1")
	// IPVS de-NATs replies in the FORWARD hook, so the node must forward.
	if err := (nsSysctl{node}).Set("net/ipv4/ip_forward", "1"); err != nil {
		t.Fatal(err)
	}
	for _, b := range []*backend{b1, b2} {
		startBackend(t, b, []int{8080, 9090}, []int{5353})
	}

	nl := node.Netlink(t, unix.NETLINK_ROUTE, unix.NETLINK_NETFILTER)
	ipvsh, err := mobyipvs.New(filepath.Join("/run/netns", node.Name))
	if err != nil {
		t.Fatal(err)
	}
	defer ipvsh.Close()
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	opts := DefaultOptions()
	opts.ClusterCIDRs = []netip.Prefix{podCIDR}
	opts.NodePortAddresses = []netip.Prefix{netip.MustParsePrefix("192.168.50.0/24")} // not the pod-facing veths
	opts.GracePeriod = time.Minute
	opts.UDPTimeout = 30 * time.Second
	p, err := New(opts, Deps{IPVS: ipvsh, Links: nl, Ipset: nl, Iptables: nsIptables(t, node), Sysctl: nsSysctl{node},
		Conntrack: &conntrack.Netlink{Handle: nl}, Now: clock})
	if err != nil {
		t.Fatal(err)
	}

	snap := model.NewSnapshot()
	snap.Node = model.NodeInfo{Name: nodeName}
	add := func(svc *model.ServicePort, eps ...model.Endpoint) {
		svc.ExternalPolicy, svc.InternalPolicy = model.PolicyCluster, model.PolicyCluster
		snap.Services[svc.Name], snap.Endpoints[svc.Name] = svc, eps
	}
	web, dns, idle := spn("default", "web", ""), spn("kube-system", "dns", "dns"), spn("default", "idle", "")
	local := spn("default", "local", "")
	// Both web backends run on this node, so a backend reaching itself through the ClusterIP must be
	// masqueraded (SY-LOOP-BACK) or its reply would bypass IPVS.
	add(&model.ServicePort{Name: web, Protocol: model.TCP, Port: 80, NodePort: 30080, ClusterIPs: []netip.Addr{ip("10.96.0.10")}},
		ready("10.244.1.2", 8080, nodeName), ready("10.244.2.2", 8080, nodeName))
	add(&model.ServicePort{Name: dns, Protocol: model.UDP, Port: 53, ClusterIPs: []netip.Addr{ip("10.96.0.53")}},
		ready("10.244.1.2", 5353, "node-b"), ready("10.244.2.2", 5353, "node-c"))
	// ClientIP affinity: the kernel must report persistence back exactly as written, or every full
	// sync would rewrite the virtual server (checked by the zero-write resync below).
	add(&model.ServicePort{Name: idle, Protocol: model.TCP, Port: 80, ClusterIPs: []netip.Addr{ip("10.96.0.20")},
		Affinity: model.SessionAffinity{ClientIP: true, TimeoutSeconds: 60}},
		ready("10.244.1.2", 9090, "node-b"), ready("10.244.2.2", 9090, "node-c"))
	// eTP=Local NodePort: the client's address must reach the backend.
	add(&model.ServicePort{Name: local, Protocol: model.TCP, Port: 80, NodePort: 30081, ClusterIPs: []netip.Addr{ip("10.96.0.30")}},
		ready("10.244.1.2", 8080, nodeName))
	snap.Services[local].ExternalPolicy = model.PolicyLocal
	snap.Full = true
	st := mustSync(t, p, snap)
	t.Logf("first sync: %+v (%d netlink round trips)", st, st.NetlinkRoundTrips())

	// The kernel's own view.
	table := readProcIPVS(t, node)
	for vs, want := range map[string][]string{
		"TCP 10.96.0.10:80":       {"10.244.1.2:8080", "10.244.2.2:8080"},
		"TCP 192.168.50.10:30080": {"10.244.1.2:8080", "10.244.2.2:8080"},
		"UDP 10.96.0.53:53":       {"10.244.1.2:5353", "10.244.2.2:5353"},
		"TCP 10.96.0.20:80":       {"10.244.1.2:9090", "10.244.2.2:9090"},
		"TCP 10.96.0.30:80":       {"10.244.1.2:8080"},
		"TCP 192.168.50.10:30081": {"10.244.1.2:8080"},
	} {
		got := table[vs]
		if len(got) != len(want) {
			t.Errorf("/proc/net/ip_vs %s: %v, want %v", vs, got, want)
		}
		for _, rs := range want {
			if got[rs].Weight != 1 {
				t.Errorf("/proc/net/ip_vs %s -> %s: %+v, want weight 1", vs, rs, got[rs])
			}
		}
	}
	if len(table) != 6 {
		t.Errorf("/proc/net/ip_vs has %d virtual servers, want 6:\n%s", len(table), node.MustRun(t, "cat", "/proc/net/ip_vs"))
	}
	addrs := node.MustRun(t, "ip", "addr", "show", DummyDevice)
	for _, a := range []string{"10.96.0.10/32", "10.96.0.53/32", "10.96.0.20/32"} {
		if !strings.Contains(addrs, a) {
			t.Errorf("ip addr show %s lacks %s:\n%s", DummyDevice, a, addrs)
		}
	}

	// An unchanged sync writes nothing; nor does a full resync to netlink.
	before := node.MustRun(t, "cat", "/proc/net/ip_vs")
	if st := mustSync(t, p, incremental(snap)); st.Writes() != 0 {
		t.Errorf("unchanged sync wrote: %+v", st)
	}
	snap.Full = true
	if st := mustSync(t, p, snap); st.IPVSWrites+st.IpsetWrites+st.LinkWrites != 0 {
		t.Errorf("unchanged full sync wrote to netlink: %+v", st)
	}
	if after := node.MustRun(t, "cat", "/proc/net/ip_vs"); after != before {
		t.Errorf("unchanged syncs changed /proc/net/ip_vs:\n%s\n---\n%s", before, after)
	}

	// Real traffic: TCP from the node to the ClusterIP reaches both backends (rr), TCP from a client
	// to the NodePort, and UDP to the ClusterIP.
	seen := map[string]bool{}
	for i := 0; i < 4; i++ {
		seen[askTCP(t, node, "10.96.0.10:80")] = true
	}
	if !seen["b1"] || !seen["b2"] {
		t.Errorf("TCP to the ClusterIP reached %v, want both backends", seen)
	}
	// Source addresses, as the backends see them.
	for i := 0; i < 4; i++ {
		if name, src := askTCPSource(t, node, "10.96.0.10:80"); src == ip("10.96.0.10") || !podCIDR.Contains(src) {
			t.Errorf("node to ClusterIP reached %s from %s; want masqueraded to the node's pod-side address", name, src)
		}
		if name, src := askTCPSource(t, client, "192.168.50.10:30080"); src == ip("192.168.50.2") {
			t.Errorf("client to eTP=Cluster NodePort reached %s with its own address; want masqueraded", name)
		}
		switch name, src := askTCPSource(t, b2.ns, "10.96.0.10:80"); name {
		case "b1":
			if src != b2.ip {
				t.Errorf("pod to ClusterIP reached b1 from %s; want the pod's own address %s", src, b2.ip)
			}
		case "b2": // hairpin: only works because it is masqueraded
			if src == b2.ip {
				t.Errorf("hairpin connection kept its source")
			}
		}
	}
	if name, src := askTCPSource(t, client, "192.168.50.10:30081"); name != "b1" || src != ip("192.168.50.2") {
		t.Errorf("client to eTP=Local NodePort reached %s from %s; want b1 from the client's address 192.168.50.2", name, src)
	}
	if got := askUDP(t, node, "10.96.0.53:53"); got != "b1" && got != "b2" {
		t.Errorf("UDP to the ClusterIP answered %q", got)
	}
	// A port no service uses on a service address is rejected, not delivered to the node.
	if err := node.Do(func() error {
		c, err := net.DialTimeout("tcp4", "10.96.0.10:8080", 3*time.Second)
		if err == nil {
			c.Close()
			return fmt.Errorf("connected to an unknown port of a ClusterIP")
		}
		return nil
	}); err != nil {
		t.Error(err)
	}

	// Graceful termination: hold a connection open, remove its backend.
	conn, r, served := dialTCP(t, node, "10.96.0.10:80")
	defer conn.Close()
	served, _, _ = strings.Cut(served, " ")
	other, otherIP, servedIP := "b2", "10.244.2.2", "10.244.1.2"
	if served == "b2" {
		other, otherIP, servedIP = "b1", "10.244.1.2", "10.244.2.2"
	}
	snap.Endpoints[web] = []model.Endpoint{ready(otherIP, 8080, "node-x")}
	snap.Endpoints[idle] = []model.Endpoint{ready("10.244.1.2", 9090, "node-b")}
	snap.Endpoints[dns] = []model.Endpoint{ready("10.244.1.2", 5353, "node-b")}
	st = mustSync(t, p, incremental(snap, web.ServiceKey, idle.ServiceKey, dns.ServiceKey))
	t.Logf("endpoint-removal sync: %+v", st)
	table = readProcIPVS(t, node)
	rs := table["TCP 10.96.0.10:80"][servedIP+":8080"]
	if rs.Weight != 0 || rs.Active < 1 {
		t.Errorf("removed real server with an open connection: %+v, want weight 0 and active connections", rs)
	}
	if _, ok := table["TCP 10.96.0.20:80"]["10.244.2.2:9090"]; ok {
		t.Errorf("removed real server without connections was not deleted at once: %v", table["TCP 10.96.0.20:80"])
	}
	if _, ok := table["UDP 10.96.0.53:53"]["10.244.2.2:5353"]; ok {
		t.Errorf("removed UDP real server was not deleted at once: %v", table["UDP 10.96.0.53:53"])
	}
	// The open connection still works; new ones go to the remaining backend.
	fmt.Fprintf(conn, "ping\n")
	if line, err := r.ReadString('\n'); err != nil || line != "ping\n" {
		t.Errorf("established connection to a terminating real server broke: %q, %v", line, err)
	}
	for i := 0; i < 3; i++ {
		if got := askTCP(t, node, "10.96.0.10:80"); got != other {
			t.Errorf("new connection went to %s, want %s", got, other)
		}
	}
	if got := askUDP(t, node, "10.96.0.53:53"); got != "b1" {
		t.Errorf("UDP after removing b2 answered %q, want b1", got)
	}
	// Still connected: a sync keeps it. After the grace period it is deleted.
	mustSync(t, p, incremental(snap))
	if _, ok := readProcIPVS(t, node)["TCP 10.96.0.10:80"][servedIP+":8080"]; !ok {
		t.Errorf("terminating real server deleted while it still had a connection")
	}
	mu.Lock()
	now = now.Add(opts.GracePeriod)
	mu.Unlock()
	mustSync(t, p, incremental(snap))
	if _, ok := readProcIPVS(t, node)["TCP 10.96.0.10:80"][servedIP+":8080"]; ok {
		t.Errorf("terminating real server kept past the grace period")
	}
	if st := mustSync(t, p, incremental(snap)); st.Writes() != 0 {
		t.Errorf("settled sync wrote: %+v", st)
	}

	// Cleanup leaves nothing of Switchyard's behind.
	if err := p.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if tbl := readProcIPVS(t, node); len(tbl) != 0 {
		t.Errorf("virtual servers after cleanup: %v", tbl)
	}
	if out := node.MustRun(t, "ip", "-o", "-4", "addr", "show", DummyDevice); strings.Contains(out, "inet ") {
		t.Errorf("addresses on %s after cleanup: %s", DummyDevice, out)
	}
	if out := node.MustRun(t, "ipset", "list", "-n"); strings.TrimSpace(out) != "" {
		t.Errorf("ipsets after cleanup: %s", out)
	}
	for _, table := range []string{"nat", "filter"} {
		if out := node.MustRun(t, "iptables-save", "-t", table); strings.Contains(out, "SY-IPVS") {
			t.Errorf("iptables %s after cleanup:\n%s", table, out)
		}
	}
}
