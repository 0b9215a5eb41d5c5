package iptables_test

// Real-kernel test: the real Proxier programs a "node" network namespace with the real
// iptables-restore, and real TCP and UDP go from a client namespace and pod namespaces through a
// ClusterIP and a NodePort to Go servers in backend namespaces. Every namespace is made by
// netnstest and deleted on exit, also on failure; nothing runs in the test process's namespace.

import (
	"bufio"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	utiliptables "github.com/switchyard/switchyard/internal/iptables"
	"github.com/switchyard/switchyard/internal/iptables/iptablestest"
	"github.com/switchyard/switchyard/internal/netnstest"
	"github.com/switchyard/switchyard/proxier/conntrack"
	"github.com/switchyard/switchyard/proxier/iptables"
	"github.com/switchyard/switchyard/proxier/iptables/tracer"
	"github.com/switchyard/switchyard/proxier/model"
)

const (
	labNodeIP   = "192.168.50.10"
	labClientIP = "192.168.50.20"
	labGateway  = "10.244.1.1" // the node's address on every pod veth
	// Off-subnet service addresses, reached through the client's default route via the node.
	labExternalIP = "198.18.0.10"
	labLBIP       = "198.18.0.20"
	// Load balancers whose address exists nowhere: a packet the node fails to DNAT or REJECT loops
	// between the node and the upstream router instead of finding a listener.
	labLBAnyIP   = "198.18.0.21" // source ranges include 0.0.0.0/0
	labLBEmptyIP = "198.18.0.22" // source ranges, no endpoints
	tcpPort      = 8080          // backends' target ports
	udpPort      = 5353
	// ioTimeout bounds a single exchange so that a broken path fails the test instead of hanging
	// it; nothing asserts on how long an exchange takes.
	ioTimeout = 5 * time.Second
	// tries per balanced check: the chance that 3 equally likely backends do not all show up is
	// 3*(2/3)^tries, about 2e-7 for 40.
	tries = 40
)

// lab is the namespaces of one real-kernel run.
type lab struct {
	node, client *netnstest.NS
	upstream     *netnstest.NS
	pods         map[string]*netnstest.NS // backends and the pod client, by name
	podIPs       map[string]string
}

// newLab builds the node namespace with an uplink to a client namespace and one routed veth per pod
// (Calico-style /32 routes, so every packet between pods crosses the node's netfilter hooks).
func newLab(t *testing.T) *lab {
	t.Helper()
	l := &lab{pods: map[string]*netnstest.NS{}, podIPs: map[string]string{}}
	l.node = netnstest.New(t, "node")
	l.node.MustRun(t, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	l.client = netnstest.New(t, "cli")
	netnstest.Veth(t, l.node, "eth0", labNodeIP+"/24", l.client, "eth0", labClientIP+"/24")
	l.client.MustRun(t, "ip", "route", "add", "default", "via", labNodeIP)
	// Like a real node, the node namespace has a default route, to an upstream router namespace.
	// The load balancer's address exists up there, as a cloud LB's would: a packet the node
	// forwards instead of dropping gets a RST from it, so a missing firewall rule shows.
	l.upstream = netnstest.New(t, "up")
	netnstest.Veth(t, l.node, "up0", "192.168.60.1/24", l.upstream, "eth0", "192.168.60.2/24")
	l.node.MustRun(t, "ip", "route", "add", "default", "via", "192.168.60.2")
	l.upstream.MustRun(t, "ip", "route", "add", "default", "via", "192.168.60.1")
	l.upstream.MustRun(t, "ip", "addr", "add", labLBIP+"/32", "dev", "lo")
	for name, ip := range map[string]string{"b1": "10.244.1.11", "b2": "10.244.1.12", "b3": "10.244.1.13", "pc": "10.244.1.50"} {
		ns := netnstest.New(t, name)
		netnstest.Veth(t, l.node, "v"+name, labGateway+"/32", ns, "eth0", ip+"/32")
		l.node.MustRun(t, "ip", "route", "add", ip+"/32", "dev", "v"+name)
		ns.MustRun(t, "ip", "route", "add", labGateway+"/32", "dev", "eth0")
		ns.MustRun(t, "ip", "route", "add", "default", "via", labGateway, "dev", "eth0")
		l.pods[name], l.podIPs[name] = ns, ip
	}
	for _, b := range []string{"b1", "b2", "b3"} {
		serve(t, l.pods[b], b)
	}
	return l
}

// serve starts a TCP and a UDP echo server in ns that answer "<name> <peer address>".
func serve(t *testing.T, ns *netnstest.NS, name string) {
	t.Helper()
	ns.ServeTCP(t, "tcp4", fmt.Sprintf(":%d", tcpPort), func(c net.Conn) { fmt.Fprintf(c, "%s %s\n", name, c.RemoteAddr()) })
	ns.ServeUDP(t, "udp4", fmt.Sprintf(":%d", udpPort), func(from net.Addr) []byte { return []byte(fmt.Sprintf("%s %s\n", name, from)) })
}

// answer is who replied and the source address it saw.
type answer struct {
	backend string
	peer    netip.Addr
}

// ask opens a new connection (or UDP socket) from ns to dst and returns the reply.
func ask(ns *netnstest.NS, proto, dst string) (answer, error) { return askFrom(ns, proto, dst, 0) }

// askFrom is ask from a fixed local port (0: any), so that a UDP exchange can reuse the 5-tuple,
// and thus the conntrack entry, of an earlier one.
func askFrom(ns *netnstest.NS, proto, dst string, localPort int) (answer, error) {
	var conn net.Conn
	err := ns.Do(func() error {
		d := net.Dialer{Timeout: ioTimeout}
		if localPort != 0 {
			d.LocalAddr = &net.UDPAddr{Port: localPort}
			if proto == "tcp" {
				d.LocalAddr = &net.TCPAddr{Port: localPort}
			}
		}
		var err error
		conn, err = d.Dial(proto+"4", dst)
		return err
	})
	if err != nil {
		return answer{}, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(ioTimeout))
	if proto == "udp" {
		if _, err := conn.Write([]byte("hello\n")); err != nil {
			return answer{}, err
		}
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return answer{}, fmt.Errorf("read from %s %s: %w", proto, dst, err)
	}
	f := strings.Fields(line)
	if len(f) != 2 {
		return answer{}, fmt.Errorf("bad reply %q", line)
	}
	peer, err := netip.ParseAddrPort(f[1])
	if err != nil {
		return answer{}, fmt.Errorf("bad reply %q: %w", line, err)
	}
	return answer{backend: f[0], peer: peer.Addr()}, nil
}

// askMany sends n new connections and returns how often each backend answered and the set of
// sources each saw.
func askMany(t *testing.T, ns *netnstest.NS, proto, dst string, n int) (map[string]int, map[string]map[netip.Addr]bool) {
	t.Helper()
	return askManyFrom(t, ns, proto, dst, n, 0)
}

// askManyFrom is askMany from local ports firstPort, firstPort+1, ... (0: any), so that every
// exchange is a connection of its own: with ports the kernel picks, two UDP exchanges may share a
// 5-tuple, and so a conntrack entry.
func askManyFrom(t *testing.T, ns *netnstest.NS, proto, dst string, n, firstPort int) (map[string]int, map[string]map[netip.Addr]bool) {
	t.Helper()
	counts := map[string]int{}
	peers := map[string]map[netip.Addr]bool{}
	for i := 0; i < n; i++ {
		port := 0
		if firstPort != 0 {
			port = firstPort + i
		}
		a, err := askFrom(ns, proto, dst, port)
		if err != nil {
			t.Fatalf("%s to %s from %s (try %d): %v", proto, dst, ns.Name, i, err)
		}
		counts[a.backend]++
		if peers[a.backend] == nil {
			peers[a.backend] = map[netip.Addr]bool{}
		}
		peers[a.backend][a.peer] = true
	}
	return counts, peers
}

// expect checks that exactly the named backends answered, and that each saw only the given source.
func expect(t *testing.T, what string, counts map[string]int, peers map[string]map[netip.Addr]bool, backends []string, sawSource func(backend string) string) {
	t.Helper()
	var got []string
	for b := range counts {
		got = append(got, b)
	}
	sort.Strings(got)
	if strings.Join(got, ",") != strings.Join(backends, ",") {
		t.Fatalf("%s: answered by %v (counts %v), want exactly %v", what, got, counts, backends)
	}
	for b, ps := range peers {
		want := netip.MustParseAddr(sawSource(b))
		if len(ps) != 1 || !ps[want] {
			t.Fatalf("%s: backend %s saw sources %v, want only %s", what, b, ps, want)
		}
	}
}

func source(ip string) func(string) string { return func(string) string { return ip } }

func labSnapshot(echoBackends ...string) *model.Snapshot {
	s := model.NewSnapshot()
	s.Full = true
	s.Node = model.NodeInfo{Name: thisNode, PodCIDRs: []netip.Prefix{pfx("10.244.1.0/24")}}
	nodeOf := map[string]string{"b1": thisNode, "b2": thisNode, "b3": "node-b"}
	ips := map[string]string{"b1": "10.244.1.11", "b2": "10.244.1.12", "b3": "10.244.1.13"}
	eps := func(port int32, names ...string) []model.Endpoint {
		var out []model.Endpoint
		for _, n := range names {
			out = append(out, ready(ips[n], port, nodeOf[n]))
		}
		return out
	}
	svc := func(n, port string) model.ServicePortName {
		return model.ServicePortName{ServiceKey: model.ServiceKey{Namespace: "default", Name: n}, Port: port}
	}
	add(s, &model.ServicePort{Name: svc("echo", "tcp"), Port: 80, ClusterIPs: addrs("10.96.0.10"), NodePort: 30080,
		ExternalIPs: addrs(labExternalIP)}, eps(tcpPort, echoBackends...)...)
	add(s, &model.ServicePort{Name: svc("echo", "udp"), Protocol: model.UDP, Port: 53, ClusterIPs: addrs("10.96.0.10"), NodePort: 30053},
		eps(udpPort, echoBackends...)...)
	add(s, &model.ServicePort{Name: svc("local", "tcp"), Port: 80, ClusterIPs: addrs("10.96.0.11"), NodePort: 30081,
		ExternalPolicy: model.PolicyLocal}, eps(tcpPort, "b1", "b3")...)
	add(s, &model.ServicePort{Name: svc("empty", "tcp"), Port: 80, ClusterIPs: addrs("10.96.0.12")})
	// A UDP service that has no endpoints until the test gives it one (see lateSvc).
	add(s, &model.ServicePort{Name: lateSvc, Protocol: model.UDP, Port: 53, ClusterIPs: addrs("10.96.0.13")})
	// A load balancer that admits only the underlay.
	add(s, &model.ServicePort{Name: svc("fw", "tcp"), Port: 80, ClusterIPs: addrs("10.96.0.14"),
		LoadBalancerIPs: addrs(labLBIP), LoadBalancerSourceRanges: []netip.Prefix{pfx("192.168.50.0/24")}},
		eps(tcpPort, "b2")...)
	// 0.0.0.0/0 beside a narrower range: no firewall at all, as in kube-proxy.
	add(s, &model.ServicePort{Name: svc("fw-any", "tcp"), Port: 80, ClusterIPs: addrs("10.96.0.15"),
		LoadBalancerIPs: addrs(labLBAnyIP), LoadBalancerSourceRanges: []netip.Prefix{pfx("192.168.50.0/24"), pfx("0.0.0.0/0")}},
		eps(tcpPort, "b2")...)
	// Source ranges and no endpoints: every source is rejected, none dropped.
	add(s, &model.ServicePort{Name: svc("fw-empty", "tcp"), Port: 80, ClusterIPs: addrs("10.96.0.16"),
		LoadBalancerIPs: addrs(labLBEmptyIP), LoadBalancerSourceRanges: []netip.Prefix{pfx("192.168.50.0/24")}})
	return s
}

var lateSvc = model.ServicePortName{ServiceKey: model.ServiceKey{Namespace: "default", Name: "late"}, Port: "udp"}

// expectDropped checks that a TCP connection from ns to dst gets no answer at all. A dropped SYN
// can only show as a timeout; the short one here cannot make a working path fail, only (under
// extreme load) let a broken one pass.
func expectDropped(t *testing.T, ns *netnstest.NS, dst string) {
	t.Helper()
	err := ns.Do(func() error {
		c, err := (&net.Dialer{Timeout: time.Second}).Dial("tcp4", dst)
		if err == nil {
			c.Close()
		}
		return err
	})
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("want the SYN to %s dropped (a timeout), got %v", dst, err)
	}
}

func TestRealKernel(t *testing.T) {
	netnstest.Require(t)
	for _, v := range []utiliptables.Variant{utiliptables.VariantNFT, utiliptables.VariantLegacy} {
		t.Run(string(v), func(t *testing.T) { testRealKernel(t, v) })
	}
}

func testRealKernel(t *testing.T, variant utiliptables.Variant) {
	l := newLab(t)

	// The Proxier and its iptables binaries run on a thread inside the node namespace; the
	// processes they exec inherit it. newProxier is also how the test restarts the daemon.
	newProxier := func() *iptables.Proxier {
		t.Helper()
		var p *iptables.Proxier
		err := l.node.Do(func() error {
			ipt, err := utiliptables.NewExec(model.IPv4, variant)
			if err != nil {
				return err
			}
			opts := traceOptions()
			opts.RandomFully = ipt.HasRandomFully()
			// A nil netlink handle opens one per call in the calling thread's namespace: the
			// node's, since Sync runs inside it.
			p, err = iptables.NewProxier(iptables.Config{Options: opts, IPTables: ipt, Conntrack: &conntrack.Netlink{}})
			return err
		})
		if err != nil {
			t.Fatalf("proxier: %v", err)
		}
		return p
	}
	p := newProxier()
	sync := func(snap *model.Snapshot) {
		t.Helper()
		if err := l.node.Do(func() error { return p.Sync(snap) }); err != nil {
			t.Fatalf("sync: %v", err)
		}
	}
	save := func() string {
		t.Helper()
		return l.node.MustRun(t, "iptables-"+string(variant)+"-save")
	}

	all := []string{"b1", "b2", "b3"}
	sync(labSnapshot(all...))
	pc := l.pods["pc"]

	check := func(t *testing.T, backends []string) {
		t.Run("external TCP to NodePort is masqueraded", func(t *testing.T) {
			c, s := askMany(t, l.client, "tcp", labNodeIP+":30080", tries)
			expect(t, "tcp nodeport", c, s, backends, source(labGateway))
		})
		t.Run("external UDP to NodePort is masqueraded", func(t *testing.T) {
			c, s := askMany(t, l.client, "udp", labNodeIP+":30053", tries)
			expect(t, "udp nodeport", c, s, backends, source(labGateway))
		})
		t.Run("pod TCP to ClusterIP keeps its source", func(t *testing.T) {
			c, s := askMany(t, pc, "tcp", "10.96.0.10:80", tries)
			expect(t, "tcp clusterip", c, s, backends, source(l.podIPs["pc"]))
		})
		t.Run("pod UDP to ClusterIP keeps its source", func(t *testing.T) {
			c, s := askMany(t, pc, "udp", "10.96.0.10:53", tries)
			expect(t, "udp clusterip", c, s, backends, source(l.podIPs["pc"]))
		})
		t.Run("node process to ClusterIP is masqueraded", func(t *testing.T) {
			c, s := askMany(t, l.node, "tcp", "10.96.0.10:80", tries)
			expect(t, "node to clusterip", c, s, backends, source(labGateway))
		})
		t.Run("node process to its own NodePort is masqueraded", func(t *testing.T) {
			c, s := askMany(t, l.node, "udp", labNodeIP+":30053", tries)
			expect(t, "node to nodeport", c, s, backends, source(labGateway))
		})
		t.Run("hairpin is masqueraded only when it lands on itself", func(t *testing.T) {
			c, s := askMany(t, l.pods["b1"], "tcp", "10.96.0.10:80", tries)
			expect(t, "hairpin", c, s, backends, func(b string) string {
				if b == "b1" {
					return labGateway
				}
				return l.podIPs["b1"]
			})
		})
	}

	t.Run("first sync", func(t *testing.T) {
		check(t, all)
		t.Run("eTP=Local NodePort keeps the client IP and uses only the local endpoint", func(t *testing.T) {
			c, s := askMany(t, l.client, "tcp", labNodeIP+":30081", 10)
			expect(t, "etp local", c, s, []string{"b1"}, source(labClientIP))
		})
		t.Run("external TCP to externalIP is masqueraded", func(t *testing.T) {
			c, s := askMany(t, l.client, "tcp", labExternalIP+":80", tries)
			expect(t, "externalIP", c, s, all, source(labGateway))
		})
		t.Run("load balancer admits its source range", func(t *testing.T) {
			c, s := askMany(t, l.client, "tcp", labLBIP+":80", 5)
			expect(t, "lb allowed", c, s, []string{"b2"}, source(labGateway))
		})
		t.Run("load balancer drops other sources", func(t *testing.T) {
			expectDropped(t, pc, labLBIP+":80")
		})
		t.Run("load balancer with 0.0.0.0/0 among its source ranges admits every source", func(t *testing.T) {
			c, s := askMany(t, pc, "tcp", labLBAnyIP+":80", 5)
			expect(t, "lb any", c, s, []string{"b2"}, source(labGateway))
		})
		t.Run("load balancer with source ranges and no endpoints rejects an allowed source", func(t *testing.T) {
			_, err := ask(l.client, "tcp", labLBEmptyIP+":80")
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("want connection refused (REJECT), got %v", err)
			}
		})
		t.Run("load balancer with source ranges and no endpoints rejects a disallowed source, not drops it", func(t *testing.T) {
			_, err := ask(pc, "tcp", labLBEmptyIP+":80")
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("want connection refused (REJECT), got %v", err)
			}
		})
		t.Run("UDP service without endpoints refuses", func(t *testing.T) {
			_, err := askFrom(pc, "udp", "10.96.0.13:53", 42000)
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("want ICMP port unreachable (REJECT), got %v", err)
			}
		})
		t.Run("service without endpoints refuses connections", func(t *testing.T) {
			_, err := ask(pc, "tcp", "10.96.0.12:80")
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("want connection refused (REJECT), got %v", err)
			}
		})
	})

	// The kernel's own dump must load into the tracer, and the tracer must agree with what real
	// packets just did.
	t.Run("tracer agrees with the kernel", func(t *testing.T) {
		rs, err := tracer.Parse(save())
		if err != nil {
			t.Fatalf("the tracer cannot read the kernel's dump: %v", err)
		}
		node := tracer.Node{Interfaces: []tracer.Interface{{Name: "eth0", Addrs: []netip.Prefix{pfx(labNodeIP + "/24")}}}}
		for name, ip := range l.podIPs {
			node.Interfaces = append(node.Interfaces, tracer.Interface{Name: "v" + name, Addrs: []netip.Prefix{pfx(labGateway + "/32")}})
			node.Routes = append(node.Routes, tracer.Route{Dst: pfx(ip + "/32"), Iface: "v" + name})
		}
		tr := tracer.New(rs, node, nil)
		res, err := tr.Trace(tracer.Packet{Src: a(labClientIP), Dst: a(labNodeIP), Proto: "tcp", SrcPort: 40000, DstPort: 30080, InIface: "eth0"})
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range res.Outcomes {
			if o.Verdict != tracer.Accept || !o.Masqueraded || o.Src.Addr() != a(labGateway) {
				t.Fatalf("tracer disagrees with the kernel on the NodePort path:\n%s", res)
			}
		}
		if len(res.Destinations()) != 3 {
			t.Fatalf("tracer sees %d destinations, the kernel used 3:\n%s", len(res.Destinations()), res)
		}
	})

	t.Run("a second sync with no change keeps rules and traffic", func(t *testing.T) {
		before := stripCounters(t, save())
		snap := labSnapshot(all...)
		snap.Full = false
		snap.Changed = map[model.ServiceKey]struct{}{}
		sync(snap)
		if after := stripCounters(t, save()); after != before {
			t.Fatalf("a no-op sync changed the rules:\nbefore:\n%s\nafter:\n%s", before, after)
		}
		check(t, all)
	})

	t.Run("removing endpoints moves traffic", func(t *testing.T) {
		// Find a UDP source port whose flow to the ClusterIP is DNATed to b3; its conntrack entry
		// outlives the rules unless the sync deletes it.
		staleFlowPort := 0
		for port := 41000; port < 41000+tries && staleFlowPort == 0; port++ {
			a, err := askFrom(pc, "udp", "10.96.0.10:53", port)
			if err != nil {
				t.Fatal(err)
			}
			if a.backend == "b3" {
				staleFlowPort = port
			}
		}
		if staleFlowPort == 0 {
			t.Fatalf("no flow landed on b3 in %d tries", tries)
		}
		if a, err := askFrom(pc, "udp", "10.96.0.10:53", staleFlowPort); err != nil || a.backend != "b3" {
			t.Fatalf("the same 5-tuple should follow its conntrack entry to b3: %v, %v", a, err)
		}

		snap := labSnapshot("b1")
		snap.Full = false
		snap.Changed = map[model.ServiceKey]struct{}{{Namespace: "default", Name: "echo"}: {}}
		sync(snap)
		check(t, []string{"b1"})
		if a, err := askFrom(pc, "udp", "10.96.0.10:53", staleFlowPort); err != nil || a.backend != "b1" {
			t.Fatalf("a UDP flow to a removed endpoint must be cleared from conntrack, got %v, %v", a, err)
		}
	})

	t.Run("a UDP service that gains an endpoint answers the same flow", func(t *testing.T) {
		snap := labSnapshot("b1")
		snap.Full = false
		snap.Endpoints[lateSvc] = []model.Endpoint{ready(l.podIPs["b2"], udpPort, thisNode)}
		snap.Changed = map[model.ServiceKey]struct{}{lateSvc.ServiceKey: {}}
		sync(snap)
		got, err := askFrom(pc, "udp", "10.96.0.13:53", 42000)
		if err != nil || got.backend != "b2" || got.peer != a(l.podIPs["pc"]) {
			t.Fatalf("want b2 to answer the pod's own address, got %v, %v", got, err)
		}
	})

	t.Run("adding them back spreads traffic again", func(t *testing.T) {
		snap := labSnapshot(all...)
		snap.Endpoints[lateSvc] = []model.Endpoint{ready(l.podIPs["b2"], udpPort, thisNode)} // as the previous step left it
		snap.Full = false
		snap.Changed = map[model.ServiceKey]struct{}{{Namespace: "default", Name: "echo"}: {}}
		sync(snap)
		check(t, all)
	})

	// The state the steps above leave, as a daemon would see it on its next sync.
	current := func() *model.Snapshot {
		snap := labSnapshot(all...)
		snap.Endpoints[lateSvc] = []model.Endpoint{ready(l.podIPs["b2"], udpPort, thisNode)}
		return snap
	}

	t.Run("an external flush is repaired by the next sync", func(t *testing.T) {
		for _, table := range []string{"nat", "filter", "mangle"} {
			l.node.MustRun(t, "iptables-"+string(variant), "-t", table, "-F")
			l.node.MustRun(t, "iptables-"+string(variant), "-t", table, "-X")
		}
		if got, err := ask(l.client, "tcp", labNodeIP+":30080"); err == nil {
			t.Fatalf("the NodePort still answers (%v) after the flush, so this step proves nothing", got)
		}
		snap := current()
		snap.Full = false
		snap.Changed = map[model.ServiceKey]struct{}{}
		sync(snap)
		check(t, all)
	})

	t.Run("a restarted proxier reconciles without duplicating rules or flushing", func(t *testing.T) {
		before := stripCounters(t, save())
		p = newProxier()
		sync(current())
		if after := stripCounters(t, save()); after != before {
			t.Fatalf("a restart with the same state changed the rules:\nbefore:\n%s\nafter:\n%s", before, after)
		}
		check(t, all)
	})

	t.Run("a restarted proxier removes what the previous run left for a deleted service", func(t *testing.T) {
		snap := current()
		local := model.ServicePortName{ServiceKey: model.ServiceKey{Namespace: "default", Name: "local"}, Port: "tcp"}
		delete(snap.Services, local)
		delete(snap.Endpoints, local)
		p = newProxier()
		sync(snap)
		// A fresh fake synced once with the same state is what the kernel must now hold.
		fake := iptablestest.NewFake()
		pf, err := iptables.NewProxier(iptables.Config{Options: traceOptions(), IPTables: fake})
		if err != nil {
			t.Fatal(err)
		}
		if err := pf.Sync(snap); err != nil {
			t.Fatal(err)
		}
		got, want := splitTables(t, save()), splitTables(t, fake.Dump())
		for _, table := range []string{"filter", "nat", "mangle"} {
			if got[table] != want[table] {
				t.Errorf("table %s after restart differs from a fresh sync of the same state\nkernel:\n%s\nfresh:\n%s", table, got[table], want[table])
			}
		}
		if _, err := ask(l.client, "tcp", labNodeIP+":30081"); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("the deleted service's NodePort should now reach the node itself and be refused, got %v", err)
		}
		check(t, all)
	})
}

// TestRealKernelMatchesFake syncs the behaviour fixture into a real kernel and into the fake and
// requires the same tables from both, so that what the tracer proves on the fake's dump holds for
// the kernel; it then runs the behaviour cases on the kernel's own dump as well.
func TestRealKernelMatchesFake(t *testing.T) {
	netnstest.Require(t)
	fake := iptablestest.NewFake()
	pf, err := iptables.NewProxier(iptables.Config{Options: traceOptions(), IPTables: fake})
	if err != nil {
		t.Fatal(err)
	}
	if err := pf.Sync(traceSnapshot()); err != nil {
		t.Fatal(err)
	}
	want := splitTables(t, fake.Dump())
	for _, v := range []utiliptables.Variant{utiliptables.VariantNFT, utiliptables.VariantLegacy} {
		t.Run(string(v), func(t *testing.T) {
			ns := netnstest.New(t, "node")
			err := ns.Do(func() error {
				ipt, err := utiliptables.NewExec(model.IPv4, v)
				if err != nil {
					return err
				}
				if !ipt.HasRandomFully() {
					return fmt.Errorf("iptables-%s lacks MASQUERADE --random-fully, which the fixture renders", v)
				}
				p, err := iptables.NewProxier(iptables.Config{Options: traceOptions(), IPTables: ipt})
				if err != nil {
					return err
				}
				return p.Sync(traceSnapshot())
			})
			if err != nil {
				t.Fatalf("sync into %s: %v", ns.Name, err)
			}
			dump := ns.MustRun(t, "iptables-"+string(v)+"-save")
			got := splitTables(t, dump)
			for _, table := range []string{"filter", "nat", "mangle"} {
				if got[table] != want[table] {
					t.Errorf("table %s: kernel and fake differ\nkernel:\n%s\nfake:\n%s", table, got[table], want[table])
				}
			}
			rs, err := tracer.Parse(dump)
			if err != nil {
				t.Fatalf("the tracer cannot read the kernel's dump: %v", err)
			}
			tr := tracer.New(rs, traceNode, nil)
			for _, c := range behaviourCases() {
				t.Run(c.name, func(t *testing.T) { check(t, tr, c.p, c.w) })
			}
		})
	}
}

// splitTables returns each table of an iptables-save dump without comments and counters.
func splitTables(t testing.TB, dump string) map[string]string {
	t.Helper()
	saved, err := utiliptables.ParseSave([]byte(dump))
	if err != nil {
		t.Fatalf("read iptables-save output: %v\n%s", err, dump)
	}
	out := map[string]string{}
	for _, tbl := range saved.Tables {
		out[tbl.Name] += tbl.String()
	}
	return out
}

// stripCounters drops the parts of iptables-save output that change without any rule changing.
func stripCounters(t testing.TB, dump string) string {
	t.Helper()
	tables := splitTables(t, dump)
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(tables)) {
		b.WriteString(tables[name])
	}
	return b.String()
}

func (a answer) String() string { return a.backend + " (saw " + a.peer.String() + ")" }
