package podnet

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"

	utiliptables "github.com/switchyard/switchyard/internal/iptables"
	"github.com/switchyard/switchyard/internal/iptables/iptablestest"
	"github.com/switchyard/switchyard/internal/netnstest"
	"github.com/switchyard/switchyard/internal/polltest"
	"github.com/switchyard/switchyard/podnet/cni"
	"github.com/switchyard/switchyard/proxier/model"
)

// buildPlugin compiles cmd/switchyard-cni into a temporary directory, so tests execute the real binary.
func buildPlugin(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "switchyard-cni")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/switchyard/switchyard/cmd/switchyard-cni").CombinedOutput()
	if err != nil {
		t.Fatalf("build plugin: %v\n%s", err, out)
	}
	return bin
}

// testNet is one simulated node: its namespace and the files its daemon and plugin share.
type testNet struct {
	ns         *netnstest.NS
	subnetFile string
	dataDir    string
	ctrl       *Controller
}

// cniNode is a node namespace, name, for the real CNI plugin alone: its subnet file says
// 10.244.1.0/24 of 10.244.0.0/16 with MTU 1450, as the controller would write it. pods are that
// many pod namespaces, named <name>p<i>.
func cniNode(t testing.TB, name string, n int) (node *testNet, pods []*netnstest.NS) {
	t.Helper()
	dir := t.TempDir()
	node = &testNet{ns: netnstest.New(t, name), subnetFile: filepath.Join(dir, "subnet.env"), dataDir: filepath.Join(dir, "cni")}
	if err := os.WriteFile(node.subnetFile, []byte("SWITCHYARD_NETWORK=10.244.0.0/16\nSWITCHYARD_SUBNET=10.244.1.0/24\nSWITCHYARD_MTU=1450\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pods = make([]*netnstest.NS, n)
	for i := range pods {
		pods[i] = netnstest.New(t, fmt.Sprintf("%sp%d", name, i))
	}
	return node, pods
}

// cniConf is the plugin configuration a runtime would read from the conflist.
func (n *testNet) cniConf() []byte {
	return []byte(fmt.Sprintf(`{"cniVersion":"1.0.0","name":"switchyard","type":"switchyard-cni","bridge":"cni0","subnetFile":%q,"dataDir":%q}`,
		n.subnetFile, n.dataDir))
}

// runPlugin executes the plugin inside the node's namespace as a container runtime would.
func runPlugin(t testing.TB, bin string, node *testNet, command, containerID string, pod *netnstest.NS, conf []byte) ([]byte, error) {
	t.Helper()
	cmd := node.ns.Command(bin)
	netnsPath := ""
	if pod != nil {
		netnsPath = "/var/run/netns/" + pod.Name
	}
	cmd.Env = append(os.Environ(), "CNI_COMMAND="+command, "CNI_CONTAINERID="+containerID, "CNI_NETNS="+netnsPath,
		"CNI_IFNAME=eth0", "CNI_PATH="+filepath.Dir(bin))
	cmd.Stdin = bytes.NewReader(conf)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.Bytes(), fmt.Errorf("%s %s: %w: %s %s", command, containerID, err, stdout.String(), stderr.String())
	}
	return stdout.Bytes(), nil
}

// addPod creates a pod namespace and connects it with the real plugin; it returns the pod's IP.
func addPod(t *testing.T, bin string, node *testNet, name string) (*netnstest.NS, net.IP) {
	t.Helper()
	pod := netnstest.New(t, name)
	out, err := runPlugin(t, bin, node, "ADD", "ctr-"+pod.Name, pod, node.cniConf())
	if err != nil {
		t.Fatal(err)
	}
	var res types100.Result
	if err := json.Unmarshal(out, &res); err != nil || len(res.IPs) != 1 {
		t.Fatalf("ADD result %s: %v", out, err)
	}
	if res.CNIVersion != "1.0.0" || len(res.Interfaces) != 3 || res.Interfaces[2].Sandbox == "" || res.IPs[0].Gateway == nil {
		t.Fatalf("ADD result incomplete: %s", out)
	}
	return pod, res.IPs[0].Address.IP
}

// startNode wires a controller to a node namespace: netlink, iptables, sysctls and link events are
// all bound to that namespace, never to the one the test runs in.
func startNode(t *testing.T, ctx context.Context, client *fake.Clientset, ns *netnstest.NS, name string, directRouting bool) *testNet {
	t.Helper()
	nsh, err := ns.Handle()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nsh.Close() })
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	dir := t.TempDir()
	tn := &testNet{ns: ns, subnetFile: filepath.Join(dir, "run", "subnet.env"), dataDir: filepath.Join(dir, "cni")}
	cfg := DefaultConfig()
	cfg.Mode, cfg.ClusterCIDR, cfg.SubnetFile = ModeVXLAN, "10.244.0.0/16", tn.subnetFile
	cfg.DirectRouting = directRouting
	cfg.ResyncPeriod = time.Hour // recreating a deleted device must come from the link event
	factory := informers.NewSharedInformerFactory(client, 0)
	ipt := iptablestest.ExecIn(t, ns, model.IPv4, utiliptables.VariantDefault)
	ctrl, err := newController(client, factory, name, cfg, Deps{
		Netlink:    h,
		Iptables:   ipt,
		Sysctl:     &ProcSysctl{Do: ns.Do},
		WatchLinks: watchLinks(&nsh),
	})
	if err != nil {
		t.Fatal(err)
	}
	tn.ctrl = ctrl
	ctx, cancel := context.WithCancel(ctx)
	factory.Start(ctx.Done())
	done := make(chan error, 1)
	go func() { done <- ctrl.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("controller %s: %v", name, err)
		}
	})
	return tn
}

// echo servers answer with the address they saw the client come from.
func serveTCP(t *testing.T, ns *netnstest.NS, addr string) {
	t.Helper()
	ns.ServeTCP(t, "tcp4", addr, func(c net.Conn) { fmt.Fprintf(c, "%s\n", c.RemoteAddr().(*net.TCPAddr).IP) })
}

func serveUDP(t *testing.T, ns *netnstest.NS, addr string) {
	t.Helper()
	ns.ServeUDP(t, "udp4", addr, func(from net.Addr) []byte { return []byte(from.(*net.UDPAddr).IP.String() + "\n") })
}

// seenBy connects from ns to addr over proto and returns the source address the server saw.
func seenBy(ns *netnstest.NS, proto, addr string) (string, error) {
	conn, err := ns.Dial(proto+"4", addr, 3*time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(3 * time.Second))
	if proto == "udp" {
		if _, err := conn.Write([]byte("hi")); err != nil {
			return "", err
		}
	}
	buf := make([]byte, 64)
	n, err := conn.Read(buf)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(buf[:n])), nil
}

// ping sends one ICMP echo request from ns to dst over a raw socket and waits for the reply.
func ping(ns *netnstest.NS, dst net.IP) error {
	var pc net.PacketConn
	if err := ns.Do(func() (err error) { pc, err = net.ListenPacket("ip4:icmp", "0.0.0.0"); return err }); err != nil {
		return err
	}
	defer pc.Close()
	msg := []byte{8, 0, 0, 0, 0x53, 0x59, 0, 1, 'p', 'i', 'n', 'g'}
	sum := 0
	for i := 0; i < len(msg); i += 2 {
		sum += int(msg[i])<<8 | int(msg[i+1])
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	msg[2], msg[3] = byte(^sum>>8), byte(^sum)
	if _, err := pc.WriteTo(msg, &net.IPAddr{IP: dst}); err != nil {
		return err
	}
	pc.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return fmt.Errorf("no echo reply from %s: %w", dst, err)
		}
		if n >= 8 && buf[0] == 0 && buf[4] == 0x53 && buf[5] == 0x59 && from.(*net.IPAddr).IP.Equal(dst) {
			return nil
		}
	}
}

func rootLinkNames(t *testing.T) map[string]bool {
	t.Helper()
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, l := range links {
		out[l.Attrs().Name] = true
	}
	return out
}

// twoNodeCluster builds two node namespaces and a fake internet joined by an underlay bridge in a
// fourth namespace, and runs a controller for each node.
func twoNodeCluster(t *testing.T, directRouting bool) (n1, n2, inet *netnstest.NS, node1, node2 *testNet) {
	t.Helper()
	// Underlay: a bridge in its own namespace joins node 1, node 2 and a fake internet.
	ul := netnstest.New(t, "ul")
	ul.MustRun(t, "ip", "link", "add", "br0", "type", "bridge")
	ul.MustRun(t, "ip", "link", "set", "br0", "up")
	n1, n2, inet = netnstest.New(t, "n1"), netnstest.New(t, "n2"), netnstest.New(t, "inet")
	for i, ns := range []*netnstest.NS{n1, n2, inet} {
		port := fmt.Sprintf("port%d", i)
		addr := fmt.Sprintf("192.168.50.%d/24", 11+i)
		if ns == inet {
			addr = "192.168.50.100/24"
		}
		netnstest.Veth(t, ns, "eth0", addr, ul, port, "")
		ul.MustRun(t, "ip", "link", "set", port, "master", "br0")
		if ns != inet {
			ns.MustRun(t, "ip", "route", "add", "default", "via", "192.168.50.100")
		}
	}
	inet.MustRun(t, "ip", "addr", "add", "198.51.100.1/32", "dev", "lo")

	client := fake.NewSimpleClientset(
		testNode("node1", "10.244.1.0/24", "192.168.50.11", nil),
		testNode("node2", "10.244.2.0/24", "192.168.50.12", nil),
	)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel) // runs before the namespaces are deleted (cleanups run in reverse)
	node1 = startNode(t, ctx, client, n1, "node1", directRouting)
	node2 = startNode(t, ctx, client, n2, "node2", directRouting)
	return n1, n2, inet, node1, node2
}

func TestOverlayTwoNodesRealKernel(t *testing.T) {
	netnstest.Require(t)
	rootBefore := rootLinkNames(t)
	bin := buildPlugin(t)

	n1, n2, inet, node1, node2 := twoNodeCluster(t, false)
	waitRoute := func(ns *netnstest.NS, dst string) {
		t.Helper()
		polltest.Eventually(t, "route to "+dst+" in "+ns.Name, func() bool {
			out, _ := ns.Run("ip", "route", "show", dst)
			return strings.Contains(out, "onlink")
		})
	}
	waitRoute(n1, "10.244.2.0/24")
	waitRoute(n2, "10.244.1.0/24")
	for _, tn := range []*testNet{node1, node2} {
		if ok, msg := tn.ctrl.Healthy(); !ok {
			t.Fatalf("%s unhealthy: %s", tn.ns.Name, msg)
		}
	}
	dev := n1.MustRun(t, "ip", "-d", "link", "show", "syvx.1")
	if !strings.Contains(dev, "mtu 1450") || !strings.Contains(dev, "vxlan id 1") || !strings.Contains(dev, "dstport 8472") || !strings.Contains(dev, "nolearning") {
		t.Fatalf("vxlan device in node1:\n%s", dev)
	}
	if out := n1.MustRun(t, "sysctl", "-n", "net.ipv4.ip_forward"); strings.TrimSpace(out) != "1" {
		t.Fatalf("ip_forward in node1: %q", out)
	}

	p1a, ip1a := addPod(t, bin, node1, "p1a")
	p1b, ip1b := addPod(t, bin, node1, "p1b")
	p2a, ip2a := addPod(t, bin, node2, "p2a")
	if !(&net.IPNet{IP: net.ParseIP("10.244.1.0"), Mask: net.CIDRMask(24, 32)}).Contains(ip1a) || ip1a.Equal(ip1b) {
		t.Fatalf("pod addresses on node1: %s %s", ip1a, ip1b)
	}
	if out := p1a.MustRun(t, "ip", "-o", "link", "show", "eth0"); !strings.Contains(out, "mtu 1450") {
		t.Fatalf("pod MTU: %s", out)
	}
	if out := n1.MustRun(t, "ip", "-d", "link", "show", "master", "cni0"); strings.Count(out, "hairpin on") != 2 {
		t.Fatalf("host veths on cni0 without hairpin:\n%s", out)
	}

	for _, p := range []*netnstest.NS{p1b, p2a} {
		serveTCP(t, p, ":8080")
		serveUDP(t, p, ":8081")
	}
	serveTCP(t, inet, "198.51.100.1:80")

	cases := []struct {
		name     string
		from     *netnstest.NS
		fromIP   net.IP
		to       net.IP
		wantSeen string
	}{
		{"same node", p1a, ip1a, ip1b, ip1a.String()},
		{"across nodes", p1a, ip1a, ip2a, ip1a.String()},
	}
	for _, c := range cases {
		if err := ping(c.from, c.to); err != nil {
			t.Errorf("%s: ping %s: %v", c.name, c.to, err)
		}
		for _, proto := range []string{"tcp", "udp"} {
			port := map[string]string{"tcp": "8080", "udp": "8081"}[proto]
			seen, err := seenBy(c.from, proto, net.JoinHostPort(c.to.String(), port))
			if err != nil {
				t.Errorf("%s %s %s -> %s: %v", c.name, proto, c.fromIP, c.to, err)
			} else if seen != c.wantSeen {
				t.Errorf("%s %s: server saw %s, want the pod's own %s (no NAT between pods)", c.name, proto, seen, c.wantSeen)
			}
		}
	}
	// The other direction across nodes.
	if seen, err := seenBy(p2a, "tcp", net.JoinHostPort(ip1b.String(), "8080")); err != nil || seen != ip2a.String() {
		t.Errorf("node2 -> node1 TCP: saw %q, %v; want %s", seen, err, ip2a)
	}
	// Egress out of the cluster CIDR is masqueraded to the node's underlay address.
	if seen, err := seenBy(p1a, "tcp", "198.51.100.1:80"); err != nil || seen != "192.168.50.11" {
		t.Errorf("egress: internet saw %q, %v; want the node address 192.168.50.11", seen, err)
	}

	// CHECK passes; DEL removes the veth and frees the address; DEL again is fine.
	if _, err := runPlugin(t, bin, node1, "CHECK", "ctr-"+p1b.Name, p1b, checkConf(t, node1, p1b, ip1b)); err != nil {
		t.Errorf("CHECK: %v", err)
	}
	bridgeMAC := linkMAC(t, n1, "cni0")
	for i := 0; i < 2; i++ {
		if _, err := runPlugin(t, bin, node1, "DEL", "ctr-"+p1b.Name, p1b, node1.cniConf()); err != nil {
			t.Fatalf("DEL #%d: %v", i+1, err)
		}
	}
	if out := p1b.MustRun(t, "ip", "-o", "link"); strings.Contains(out, "eth0") {
		t.Errorf("pod eth0 still there after DEL: %s", out)
	}
	// A bridge whose MAC followed its ports would change it here and strand the other pods' ARP entries.
	if mac := linkMAC(t, n1, "cni0"); mac != bridgeMAC {
		t.Errorf("cni0 changed its MAC from %s to %s when a pod left", bridgeMAC, mac)
	}
	if _, err := os.Stat(filepath.Join(node1.dataDir, "switchyard", ip1b.String())); !os.IsNotExist(err) {
		t.Errorf("address %s still reserved after DEL: %v", ip1b, err)
	}

	// The device is deleted by hand: it comes back (same MAC) from the link event, and so do routes.
	macBefore := linkMAC(t, n1, "syvx.1")
	n1.MustRun(t, "ip", "link", "del", "syvx.1")
	waitRoute(n1, "10.244.2.0/24")
	if mac := linkMAC(t, n1, "syvx.1"); mac != macBefore {
		t.Errorf("recreated device has MAC %s, had %s", mac, macBefore)
	}
	if seen, err := seenBy(p1a, "tcp", net.JoinHostPort(ip2a.String(), "8080")); err != nil || seen != ip1a.String() {
		t.Errorf("after device recreation: saw %q, %v", seen, err)
	}

	// The root namespace gained no device from any of this.
	for name := range rootLinkNames(t) {
		if !rootBefore[name] && (strings.HasPrefix(name, "sy") || name == "cni0" || name == "br0") {
			t.Errorf("device %s appeared in the root namespace", name)
		}
	}
}

func linkMAC(t *testing.T, ns *netnstest.NS, dev string) string {
	t.Helper()
	fields := strings.Fields(ns.MustRun(t, "cat", "/sys/class/net/"+dev+"/address"))
	if len(fields) == 0 {
		t.Fatalf("no MAC for %s", dev)
	}
	return fields[0]
}

func checkConf(t *testing.T, node *testNet, pod *netnstest.NS, ip net.IP) []byte {
	t.Helper()
	var conf map[string]any
	json.Unmarshal(node.cniConf(), &conf)
	conf["prevResult"] = map[string]any{
		"cniVersion": "1.0.0",
		"interfaces": []any{map[string]any{"name": "eth0", "sandbox": "/var/run/netns/" + pod.Name}},
		"ips":        []any{map[string]any{"address": ip.String() + "/24", "interface": 0}},
	}
	data, _ := json.Marshal(conf)
	return data
}

func TestCNIFailuresLeaveNothingBehind(t *testing.T) {
	netnstest.Require(t)
	bin := buildPlugin(t)
	node := &testNet{ns: netnstest.New(t, "cn"), subnetFile: filepath.Join(t.TempDir(), "subnet.env"), dataDir: filepath.Join(t.TempDir(), "cni")}
	pod := netnstest.New(t, "cp")

	// No subnet file yet: a "try again later" error, nothing created.
	out, err := runPlugin(t, bin, node, "ADD", "c0", pod, node.cniConf())
	if err == nil || !strings.Contains(string(out), `"code": 11`) || !strings.Contains(string(out), "does not exist") {
		t.Fatalf("ADD without subnet file: %v\n%s", err, out)
	}
	// Bad config: decoding error code 6.
	out, err = runPlugin(t, bin, node, "ADD", "c0", pod, []byte(`{"cniVersion":"1.0.0",`))
	if err == nil || !strings.Contains(string(out), `"code": 6`) {
		t.Fatalf("ADD with bad config: %v\n%s", err, out)
	}

	// A /29 holds five pods. The sixth gets a clear pool-full error and leaves no veth or address.
	os.WriteFile(node.subnetFile, []byte("SWITCHYARD_NETWORK=10.244.0.0/16\nSWITCHYARD_SUBNET=10.244.9.0/29\nSWITCHYARD_MTU=1450\n"), 0o644)
	pods := []*netnstest.NS{pod}
	for i := 1; i < 6; i++ {
		pods = append(pods, netnstest.New(t, fmt.Sprintf("cp%d", i)))
	}
	for i, p := range pods[:5] {
		if _, err := runPlugin(t, bin, node, "ADD", fmt.Sprint("c", i), p, node.cniConf()); err != nil {
			t.Fatal(err)
		}
	}
	linksBefore := node.ns.MustRun(t, "ip", "-o", "link")
	out, err = runPlugin(t, bin, node, "ADD", "c5", pods[5], node.cniConf())
	if err == nil || !strings.Contains(string(out), "is full") {
		t.Fatalf("ADD into a full pool: %v\n%s", err, out)
	}
	if after := node.ns.MustRun(t, "ip", "-o", "link"); strings.Count(after, "\n") != strings.Count(linksBefore, "\n") {
		t.Fatalf("failed ADD changed the node's links:\nbefore:\n%s\nafter:\n%s", linksBefore, after)
	}
	if out := pods[5].MustRun(t, "ip", "-o", "link"); strings.Contains(out, "eth0") {
		t.Fatalf("failed ADD left eth0 in the pod: %s", out)
	}

	runPlugin(t, bin, node, "DEL", "c4", pods[4], node.cniConf()) // frees one address
	// An interface name clash in the pod is refused before anything is reserved.
	pods[5].MustRun(t, "ip", "link", "add", "eth0", "type", "bridge")
	if out, err := runPlugin(t, bin, node, "ADD", "c5", pods[5], node.cniConf()); err == nil {
		t.Fatalf("ADD over an existing eth0 succeeded: %s", out)
	}
	// A failure after the reservation (the host veth name is taken) releases the address and leaves
	// the foreign link that holds the name alone.
	clash := cni.HostVethName("c6", "eth0")
	node.ns.MustRun(t, "ip", "link", "add", clash, "type", "bridge")
	pod6 := netnstest.New(t, "cp6")
	if out, err := runPlugin(t, bin, node, "ADD", "c6", pod6, node.cniConf()); err == nil || !strings.Contains(string(out), "create veth") {
		t.Fatalf("ADD with a taken host veth name: %v\n%s", err, out)
	}
	if _, err := node.ns.Run("ip", "link", "show", clash); err != nil {
		t.Fatalf("rollback deleted a link it did not create: %v", err)
	}
	if out := pod6.MustRun(t, "ip", "-o", "link"); strings.Contains(out, "eth0") {
		t.Fatalf("failed ADD left eth0 in the pod: %s", out)
	}
	entries, _ := os.ReadDir(filepath.Join(node.dataDir, "switchyard"))
	reserved := 0
	for _, e := range entries {
		if net.ParseIP(e.Name()) != nil {
			reserved++
		}
	}
	if reserved != 4 {
		t.Fatalf("%d addresses reserved after the failed ADD, want 4", reserved)
	}
}

// TestCNIConcurrentAddsRealPlugin runs 100 ADDs of the real binary at once on a node that has no
// bridge yet: they race to create it and to reserve addresses, and every pod must end up with its own
// address and a working eth0.
func TestCNIConcurrentAddsRealPlugin(t *testing.T) {
	netnstest.Require(t)
	bin := buildPlugin(t)
	const n = 100
	node, pods := cniNode(t, "cc", n)
	type result struct {
		ip  string
		err error
	}
	results := make(chan result, n)
	for i, p := range pods {
		go func() {
			out, err := runPlugin(t, bin, node, "ADD", fmt.Sprintf("conc-%d", i), p, node.cniConf())
			if err != nil {
				results <- result{err: err}
				return
			}
			var res types100.Result
			if err := json.Unmarshal(out, &res); err != nil || len(res.IPs) != 1 {
				results <- result{err: fmt.Errorf("result %s: %v", out, err)}
				return
			}
			results <- result{ip: res.IPs[0].Address.IP.String()}
		}()
	}
	seen := map[string]bool{}
	for i := 0; i < n; i++ {
		r := <-results
		if r.err != nil {
			t.Error(r.err)
			continue
		}
		if seen[r.ip] {
			t.Errorf("address %s handed out twice", r.ip)
		}
		seen[r.ip] = true
	}
	if t.Failed() {
		return
	}
	if out := node.ns.MustRun(t, "ip", "-o", "link", "show", "master", "cni0"); strings.Count(out, "\n") != n {
		t.Fatalf("%d ports on cni0, want %d", strings.Count(out, "\n"), n)
	}
	// Spot-check that the first and last pod can talk through the bridge.
	serveTCP(t, pods[n-1], ":8080")
	last := strings.Fields(pods[n-1].MustRun(t, "ip", "-4", "-o", "addr", "show", "eth0"))[3]
	lastIP, _, _ := strings.Cut(last, "/")
	if seen, err := seenBy(pods[0], "tcp", net.JoinHostPort(lastIP, "8080")); err != nil || !strings.HasPrefix(seen, "10.244.1.") {
		t.Fatalf("pod to pod over the bridge: %q %v", seen, err)
	}
}

// TestDirectRoutingRealKernel: nodes on one L2 subnet route pod CIDRs straight to each other's
// underlay address; pod traffic crosses without encapsulation and keeps its source address.
func TestDirectRoutingRealKernel(t *testing.T) {
	netnstest.Require(t)
	bin := buildPlugin(t)
	n1, n2, _, node1, node2 := twoNodeCluster(t, true)
	polltest.Eventually(t, "direct routes", func() bool {
		a, _ := n1.Run("ip", "route", "show", "10.244.2.0/24")
		b, _ := n2.Run("ip", "route", "show", "10.244.1.0/24")
		return strings.Contains(a, "via 192.168.50.12 dev eth0") && strings.Contains(b, "via 192.168.50.11 dev eth0")
	})
	p1, ip1 := addPod(t, bin, node1, "d1")
	p2, ip2 := addPod(t, bin, node2, "d2")
	serveTCP(t, p2, ":8080")
	txBefore := n1.MustRun(t, "cat", "/sys/class/net/syvx.1/statistics/tx_packets")
	if seen, err := seenBy(p1, "tcp", net.JoinHostPort(ip2.String(), "8080")); err != nil || seen != ip1.String() {
		t.Fatalf("direct-routed TCP: saw %q, %v; want %s", seen, err, ip1)
	}
	if err := ping(p1, ip2); err != nil {
		t.Fatalf("direct-routed ping: %v", err)
	}
	if txAfter := n1.MustRun(t, "cat", "/sys/class/net/syvx.1/statistics/tx_packets"); txAfter != txBefore {
		t.Fatalf("traffic went through the VXLAN device (tx %s -> %s) despite direct routing", strings.TrimSpace(txBefore), strings.TrimSpace(txAfter))
	}
}
