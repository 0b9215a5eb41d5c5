//go:build ipvsvm

package ipvsvm

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/e2e/framework/echo"
	"github.com/switchyard/switchyard/internal/netnstest"
	"github.com/switchyard/switchyard/proxier/explain"
)

// Addresses inside the VM. The VM's root namespace is the node (the whole VM is thrown away);
// each backend and each client is a namespace joined to it by a veth.
const (
	podClientIP      = "10.244.8.2" // a "pod" inside the cluster CIDR
	podClientGW      = "10.244.8.1"
	outsideClientIP  = "192.168.50.2" // an outside client on an underlay-like link
	outsideClientGW  = "192.168.50.10"
	switchyardBinary = "/root/switchyard"
	vmKubeconfig     = "/root/vm.kubeconfig"
	requestsPerCheck = 6
)

// TestGuest runs inside the VM (TestIPVSVM starts it with hack/vm/run.sh). It wires backends and
// clients, starts the real switchyard in IPVS mode against the host's API server, waits for the
// virtual servers and sends real TCP through the ClusterIP and the NodePort.
func TestGuest(t *testing.T) {
	if os.Getenv(envGuest) != "1" {
		t.Skip("runs inside the IPVS VM; TestIPVSVM starts it there")
	}
	netnstest.Require(t)
	namespace, clusterIP := os.Getenv(envNamespace), os.Getenv(envClusterIP)
	nodePort, err := strconv.Atoi(os.Getenv(envNodePort))
	if namespace == "" || net.ParseIP(clusterIP) == nil || err != nil {
		t.Fatalf("bad environment: %s=%q %s=%q %s=%q", envNamespace, namespace, envClusterIP, clusterIP, envNodePort, os.Getenv(envNodePort))
	}
	// IPVS de-NATs replies to forwarded traffic in the FORWARD hook, so the node must forward.
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}

	want := map[string]bool{}
	for i, name := range backendNames {
		pod := namespace + "/" + name
		want[pod] = true
		ns := netnstest.New(t, "be")
		gw := strings.TrimSuffix(backendIPs[i], ".2") + ".1"
		rootVeth(t, ns, fmt.Sprintf("vbe%d", i), gw+"/24", backendIPs[i]+"/24", gw)
		startEcho(t, ns, pod, backendIPs[i]+":8080")
	}
	podClient := netnstest.New(t, "pod")
	rootVeth(t, podClient, "vpod", podClientGW+"/24", podClientIP+"/24", podClientGW)
	outside := netnstest.New(t, "out")
	rootVeth(t, outside, "vout", outsideClientGW+"/24", outsideClientIP+"/24", outsideClientGW)

	startSwitchyard(t)
	vip := net.JoinHostPort(clusterIP, "80")
	np := net.JoinHostPort(vmNodeIP, strconv.Itoa(nodePort))
	waitForVirtualServer(t, vip, len(backendIPs))
	waitForVirtualServer(t, np, len(backendIPs))
	// A sync writes the virtual servers before its ipsets and iptables rules (the masquerade
	// marks), so seeing them is not enough: wait for a sync to finish after they appeared.
	waitForSyncAfter(t, time.Now())

	t.Run("ClusterIP from the node", func(t *testing.T) {
		checkAnswers(t, nil, vip, want, "")
	})
	t.Run("ClusterIP from a pod", func(t *testing.T) {
		// Pod traffic inside the cluster CIDR keeps its source address (no masquerade).
		checkAnswers(t, podClient, vip, want, podClientIP)
	})
	t.Run("NodePort from the node", func(t *testing.T) {
		checkAnswers(t, nil, np, want, "")
	})
	t.Run("NodePort from outside", func(t *testing.T) {
		// externalTrafficPolicy Cluster: an outside client is masqueraded to the node's address
		// on the backend's link, so the backend never sees 192.168.50.2.
		seen := checkAnswers(t, outside, np, want, "")
		for client := range seen {
			if client == outsideClientIP {
				t.Errorf("a backend saw the outside client's own address %s: NodePort traffic was not masqueraded", client)
			}
		}
	})
	// switchyard explain, read from the same live state, must tell the path these requests took.
	t.Run("explain ClusterIP from a pod", func(t *testing.T) {
		checkExplain(t, podClient, explain.FromPod, podClientIP, vip, want)
	})
	t.Run("explain NodePort from outside", func(t *testing.T) {
		checkExplain(t, outside, explain.FromExternal, outsideClientIP, np, want)
	})
	// explain --check, last: it deletes a real server by hand, which the daemon then repairs.
	t.Run("explain check", func(t *testing.T) {
		checkDrift(t, vip)
	})
	if t.Failed() {
		dumpNode(t)
	}
}

// rootVeth joins ns to the VM's root namespace: rootAddr on the root end (named rootName), nsAddr
// on ns's eth0, and ns's default route via gw.
func rootVeth(t *testing.T, ns *netnstest.NS, rootName, rootAddr, nsAddr, gw string) {
	t.Helper()
	run(t, "ip", "link", "add", rootName, "type", "veth", "peer", "name", "eth0", "netns", ns.Name)
	run(t, "ip", "addr", "add", rootAddr, "dev", rootName)
	run(t, "ip", "link", "set", rootName, "up")
	ns.MustRun(t, "ip", "addr", "add", nsAddr, "dev", "eth0")
	ns.MustRun(t, "ip", "link", "set", "eth0", "up")
	ns.MustRun(t, "ip", "route", "add", "default", "via", gw)
}

func run(t *testing.T, argv ...string) {
	t.Helper()
	if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(argv, " "), err, out)
	}
}

// startEcho serves the e2e echo answer for pod on addr inside ns.
func startEcho(t *testing.T, ns *netnstest.NS, pod, addr string) {
	t.Helper()
	var l net.Listener
	if err := ns.Do(func() (err error) {
		l, err = net.Listen("tcp4", addr)
		return err
	}); err != nil {
		t.Fatalf("listen on %s in %s: %v", addr, ns.Name, err)
	}
	t.Cleanup(func() { l.Close() })
	srv := &echo.Server{Pod: pod}
	go srv.ServeHTTP(l) //nolint:errcheck // ends with the listener's close at cleanup
}

const (
	switchyardLog = "/tmp/switchyard.log"
	metricsAddr   = "127.0.0.1:10249"
	lastSyncGauge = "kubeproxy_sync_proxy_rules_last_timestamp_seconds"
)

// startSwitchyard runs the real binary in IPVS mode as the node vm-node, and stops it at cleanup.
func startSwitchyard(t *testing.T) {
	t.Helper()
	logf, err := os.Create(switchyardLog)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(switchyardBinary, "--proxy-mode=ipvs", "--hostname-override="+vmNodeName,
		"--kubeconfig="+vmKubeconfig, "--cluster-cidr=10.244.0.0/16", "--ipvs-sync-period=10s", "--metrics-bind-address="+metricsAddr, "--v=2")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start switchyard: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case err := <-exited:
			t.Errorf("switchyard exited during the test: %v", err)
			dumpNode(t)
		default:
			cmd.Process.Kill()
			<-exited
		}
		logf.Close()
	})
}

// waitForVirtualServer waits until /proc/net/ip_vs lists a TCP virtual server at addr with n real
// servers. Emulation is slow and the first sync lists everything from the API server, so the wait
// is generous; it is a readiness wait, not a timing assertion.
func waitForVirtualServer(t *testing.T, addr string, n int) {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	ip := net.ParseIP(host).To4()
	key := fmt.Sprintf("TCP  %02X%02X%02X%02X:%04X", ip[0], ip[1], ip[2], ip[3], p)
	deadline := time.Now().Add(5 * time.Minute)
	last := ""
	for time.Now().Before(deadline) {
		b, err := os.ReadFile("/proc/net/ip_vs")
		if err != nil {
			t.Fatal(err)
		}
		last = string(b)
		if realServers(last, key) == n {
			t.Logf("virtual server %s has %d real servers", addr, n)
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	dumpNode(t)
	t.Fatalf("no virtual server %s (%q) with %d real servers in /proc/net/ip_vs:\n%s", addr, key, n, last)
}

// waitForSyncAfter waits until switchyard's last successful sync (the kube-proxy gauge it sets
// at the end of one) is not older than since. Syncs do not overlap, so the sync that wrote the
// virtual servers seen before since has then finished, ipsets and iptables rules included.
func waitForSyncAfter(t *testing.T, since time.Time) {
	t.Helper()
	want := float64(since.UnixNano()) / 1e9
	deadline := time.Now().Add(5 * time.Minute)
	var last float64
	var lastErr error
	for time.Now().Before(deadline) {
		last, lastErr = lastSync()
		if lastErr == nil && last >= want {
			t.Logf("switchyard finished a sync %.1fs after the virtual servers appeared", last-want)
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	dumpNode(t)
	t.Fatalf("no sync finished after %s (last %s=%v, error %v)", since.Format(time.RFC3339Nano), lastSyncGauge, last, lastErr)
}

// lastSync reads the last-sync gauge from switchyard's metrics endpoint.
func lastSync() (float64, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), lastSyncGauge+`{ip_family="IPv4"} `); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no %s in the metrics", lastSyncGauge)
}

// realServers counts the "->" lines under the virtual server line that starts with key, or -1
// when there is no such virtual server.
func realServers(table, key string) int {
	count := -1
	for _, line := range strings.Split(table, "\n") {
		switch {
		case strings.HasPrefix(line, key+" "):
			count = 0
		case count >= 0 && strings.HasPrefix(strings.TrimSpace(line), "->"):
			count++
		case count >= 0:
			return count
		}
	}
	return count
}

// checkAnswers sends requestsPerCheck HTTP requests to addr from ns (nil: the VM's root namespace)
// and asserts that every one is answered by a backend of want, that each backend answers at least
// once (the scheduler is round robin), and, when wantClient is set, that the backend saw that
// client address. It returns the client addresses (without port) the backends saw.
func checkAnswers(t *testing.T, ns *netnstest.NS, addr string, want map[string]bool, wantClient string) map[string]bool {
	t.Helper()
	seen := map[string]int{}
	clients := map[string]bool{}
	for i := 0; i < requestsPerCheck; i++ {
		answer, err := get(ns, addr)
		if err != nil {
			t.Fatalf("request %d to %s: %v", i+1, addr, err)
		}
		pod, client, err := echo.ParseAnswer(answer)
		if err != nil {
			t.Fatalf("request %d to %s: %v", i+1, addr, err)
		}
		if !want[pod] {
			t.Fatalf("request %d to %s answered by %q, not one of the service's backends", i+1, addr, pod)
		}
		h, _, err := net.SplitHostPort(client)
		if err != nil {
			t.Fatalf("request %d to %s: client address %q: %v", i+1, addr, client, err)
		}
		clients[h] = true
		if wantClient != "" {
			if h != wantClient {
				t.Errorf("request %d to %s: backend %s saw client %s, want %s", i+1, addr, pod, client, wantClient)
			}
		}
		seen[pod]++
	}
	for pod := range want {
		if seen[pod] == 0 {
			t.Errorf("%s never answered %d requests to %s (answers: %v)", pod, requestsPerCheck, addr, seen)
		}
	}
	t.Logf("%s: answers %v, clients seen %v", addr, seen, clients)
	return clients
}

// get sends one HTTP/1.0 GET to addr from ns and returns the body's last line.
func get(ns *netnstest.NS, addr string) (string, error) {
	var conn net.Conn
	dial := func() (err error) {
		d := net.Dialer{Timeout: 10 * time.Second}
		conn, err = d.DialContext(context.Background(), "tcp4", addr)
		return err
	}
	var err error
	if ns == nil {
		err = dial()
	} else {
		err = ns.Do(dial)
	}
	if err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(conn, "GET / HTTP/1.0\r\nHost: ipvsvm\r\n\r\n"); err != nil {
		return "", fmt.Errorf("send: %w", err)
	}
	body, err := io.ReadAll(conn)
	if err != nil {
		return "", fmt.Errorf("read: %w", err)
	}
	last := ""
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			last = line
		}
	}
	if !strings.HasPrefix(string(body), "HTTP/1.") {
		return "", fmt.Errorf("not an HTTP answer: %q", body)
	}
	return last, nil
}

// dumpNode prints what a failure needs: the IPVS table, the nat rules and switchyard's log tail.
func dumpNode(t *testing.T) {
	t.Helper()
	for _, argv := range [][]string{{"cat", "/proc/net/ip_vs"}, {"iptables-save", "-t", "nat"}, {"ip", "-4", "addr"}, {"tail", "-n", "80", switchyardLog}} {
		out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
		t.Logf("$ %s (err %v)\n%s", strings.Join(argv, " "), err, out)
	}
}
