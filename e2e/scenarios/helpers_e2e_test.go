//go:build e2e

package scenarios

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/switchyard/switchyard/e2e/framework/cluster"
	"github.com/switchyard/switchyard/e2e/framework/echo"
)

// converge is the ceiling for the system to converge after a change: the EndpointSlice controller
// publishing, switchyard's min-sync-period batching, and a sync. It is never the thing under test.
// It is generous because kube-controller-manager takes half a minute or more to publish again
// after the API server outage scenario.
const converge = 90 * time.Second

// scenario is one scenario's view of the cluster: its own Kubernetes namespace and the echo pods
// it started, all removed when the test ends.
type scenario struct {
	t   *testing.T
	c   *cluster.Cluster
	ctx context.Context
	ns  string
	// pods maps an echo pod's name to its node index and IP.
	pods map[string]podInfo
	// routes maps an address the underlay routes through a node (underlayRoute) to that node.
	routes map[string]int
}

type podInfo struct {
	node int
	ip   string
}

// newScenario gives the test a fresh namespace (named after the test, made DNS-safe) and arranges
// for its pods and services to go away afterwards and for the cluster's state to be printed if it
// fails.
func newScenario(t *testing.T, ns string) *scenario {
	t.Helper()
	c := testCluster
	ctx := context.Background()
	s := &scenario{t: t, c: c, ctx: ctx, ns: ns, pods: map[string]podInfo{}, routes: map[string]int{}}
	if err := c.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for name, p := range s.pods {
			if err := c.RemoveEchoPod(ctx, p.node, ns, name); err != nil {
				t.Errorf("remove pod %s/%s: %v", ns, name, err)
			}
		}
		svcs, err := c.Client.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Errorf("list services of %s: %v", ns, err)
			return
		}
		for _, svc := range svcs.Items {
			if err := c.Client.CoreV1().Services(ns).Delete(ctx, svc.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("delete service %s/%s: %v", ns, svc.Name, err)
			}
		}
	})
	// Cleanups run last-registered first: the dump must see the failing state, before the
	// scenario's pods and services are removed.
	c.DumpOnFailure(t)
	return s
}

// addPod starts a real echo pod on node i and returns its IP.
func (s *scenario) addPod(node int, name string, labels map[string]string) string {
	s.t.Helper()
	ip, err := s.c.AddEchoPod(s.ctx, node, s.ns, name, labels)
	if err != nil {
		s.t.Fatalf("add pod %s on node %d: %v", name, node, err)
	}
	s.pods[name] = podInfo{node: node, ip: ip}
	return ip
}

// removePod stops an echo pod and deletes its Pod object at once.
func (s *scenario) removePod(name string) {
	s.t.Helper()
	p, ok := s.pods[name]
	if !ok {
		s.t.Fatalf("no pod %s in this scenario", name)
	}
	if err := s.c.RemoveEchoPod(s.ctx, p.node, s.ns, name); err != nil {
		s.t.Fatal(err)
	}
	delete(s.pods, name)
}

// podNS is the network namespace of one of the scenario's pods.
func (s *scenario) podNS(name string) string {
	return cluster.PodNetNS(s.ns, name)
}

// qualified is the name the echo server reports for a pod of this scenario.
func (s *scenario) qualified(pod string) string {
	return s.ns + "/" + pod
}

// service creates a Service named name selecting selector, port 80 to the echo server's 8080 over
// TCP (and UDP port 53 to 8080 when udp is set); mutate adjusts the spec before creation.
func (s *scenario) service(name string, selector map[string]string, mutate func(*v1.Service)) *v1.Service {
	s.t.Helper()
	svc := cluster.EchoService(s.ns, name, "", selector)
	if mutate != nil {
		mutate(svc)
	}
	out, err := s.c.Client.CoreV1().Services(s.ns).Create(s.ctx, svc, metav1.CreateOptions{})
	if err != nil {
		s.t.Fatalf("create service %s/%s: %v", s.ns, name, err)
	}
	return out
}

// answer is one echo server reply as a client saw it.
type answer struct {
	pod    string // namespace/name of the pod that answered
	client string // the client IP the pod saw
}

// curlExit is curl's exit status when a request failed (7: could not connect, 28: timed out).
type curlExit struct {
	code int
	msg  string
}

func (e *curlExit) Error() string { return fmt.Sprintf("curl exit %d: %s", e.code, e.msg) }

// get sends one HTTP request to addr (host:port) from network namespace netns, on a new
// connection, giving up after timeout. A failed request returns a *curlExit.
func (s *scenario) get(netns, addr string, timeout time.Duration) (answer, error) {
	secs := strconv.FormatFloat(timeout.Seconds(), 'f', 1, 64)
	out, err := s.c.Exec(s.ctx, netns, "curl", "-sS", "--connect-timeout", secs, "--max-time", secs, "http://"+addr+"/")
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return answer{}, &curlExit{code: exit.ExitCode(), msg: err.Error()}
		}
		return answer{}, err
	}
	return parse(out)
}

// udp sends one datagram to addr from netns (from sourcePort when it is not 0) and returns the
// answer, waiting up to half a second for it.
func (s *scenario) udp(netns, addr string, sourcePort int) (answer, error) {
	target := "UDP:" + addr
	if sourcePort != 0 {
		target += ",sourceport=" + strconv.Itoa(sourcePort) + ",reuseaddr"
	}
	cmd := exec.CommandContext(s.ctx, "ip", "netns", "exec", netns, "socat", "-t", "0.5", "-T", "0.5", "-", target)
	cmd.Stdin = strings.NewReader("ping\n")
	out, err := cmd.Output()
	if err != nil {
		return answer{}, fmt.Errorf("socat to %s in %s: %w", addr, netns, err)
	}
	if len(strings.TrimSpace(string(out))) == 0 {
		return answer{}, fmt.Errorf("no UDP answer from %s in %s", addr, netns)
	}
	return parse(string(out))
}

func parse(out string) (answer, error) {
	pod, client, err := echo.ParseAnswer(strings.TrimSpace(out))
	if err != nil {
		return answer{}, err
	}
	host, _, err := net.SplitHostPort(client)
	if err != nil {
		return answer{}, fmt.Errorf("client address %q: %w", client, err)
	}
	return answer{pod: pod, client: host}, nil
}

// waitAnswers polls addr from netns until every pod in want has answered at least once, and
// fails the test if another pod answers or the wait runs out.
func (s *scenario) waitAnswers(netns, addr string, want ...string) map[string]answer {
	s.t.Helper()
	seen := map[string]answer{}
	var last error
	start := time.Now()
	defer func() {
		// Slow convergence is not a failure, but worth seeing when a run is slow.
		if took := time.Since(start); took > 10*time.Second {
			s.t.Logf("%s from %s took %s to be answered by %v", addr, netns, took.Round(100*time.Millisecond), want)
		}
	}()
	err := cluster.WaitFor(s.ctx, converge, fmt.Sprintf("%s from %s answered by %v", addr, netns, want),
		func(context.Context) (bool, error) {
			a, err := s.get(netns, addr, 2*time.Second)
			if err != nil {
				last = err
				return false, nil
			}
			seen[a.pod] = a
			for _, w := range want {
				if _, ok := seen[w]; !ok {
					return false, nil
				}
			}
			return true, nil
		})
	for pod := range seen {
		if !contains(want, pod) {
			s.t.Errorf("%s from %s answered by %s; want only %v", addr, netns, pod, want)
		}
	}
	if err != nil {
		s.t.Fatalf("%v (seen %v, last error %v)", err, keys(seen), last)
	}
	s.explainDelivers(netns, addr, want)
	return seen
}

// waitOnly waits until the rules on the client's node no longer send anything to IPs in gone, then
// checks that n requests in a row are all answered by pods in want.
func (s *scenario) waitOnly(node int, netns, addr string, gone []string, n int, want ...string) {
	s.t.Helper()
	s.waitRules(node, fmt.Sprintf("no DNAT to %v", gone), func(nat string) bool {
		for _, ip := range gone {
			if strings.Contains(nat, "--to-destination "+ip+":") {
				return false
			}
		}
		return true
	})
	for i := 0; i < n; i++ {
		a, err := s.get(netns, addr, 5*time.Second)
		if err != nil {
			s.t.Fatalf("request %d to %s from %s: %v", i, addr, netns, err)
		}
		if !contains(want, a.pod) {
			s.t.Fatalf("request %d to %s from %s answered by %s; want one of %v", i, addr, netns, a.pod, want)
		}
	}
	s.explainDelivers(netns, addr, want)
}

// natRules is node i's nat table.
func (s *scenario) natRules(node int) (string, error) {
	return s.c.NodeExec(s.ctx, node, "iptables-save", "-t", "nat")
}

// waitRules polls node i's nat table until ok accepts it.
func (s *scenario) waitRules(node int, desc string, ok func(nat string) bool) {
	s.t.Helper()
	s.waitTable(node, "nat", desc, ok)
}

// waitTable polls one of node i's iptables tables until ok accepts it.
func (s *scenario) waitTable(node int, table, desc string, ok func(rules string) bool) {
	s.t.Helper()
	err := cluster.WaitFor(s.ctx, converge, fmt.Sprintf("node %d %s rules: %s", node, table, desc),
		func(context.Context) (bool, error) {
			rules, err := s.c.NodeExec(s.ctx, node, "iptables-save", "-t", table)
			if err != nil {
				return false, err
			}
			return ok(rules), nil
		})
	if err != nil {
		s.t.Fatal(err)
	}
}

// waitRule polls one of node i's iptables tables until one of its lines satisfies match.
func (s *scenario) waitRule(node int, table, desc string, match func(line string) bool) {
	s.t.Helper()
	s.waitTable(node, table, desc, func(rules string) bool {
		return slices.ContainsFunc(strings.Split(rules, "\n"), match)
	})
}

// waitDNAT waits until node i's rules DNAT to every IP in ips.
func (s *scenario) waitDNAT(node int, ips ...string) {
	s.t.Helper()
	s.waitRules(node, fmt.Sprintf("DNAT to %v", ips), func(nat string) bool {
		for _, ip := range ips {
			if !strings.Contains(nat, "--to-destination "+ip+":") {
				return false
			}
		}
		return true
	})
}

// underlayRoute routes dst (a /32) from the underlay namespace through node i, as a router in
// front of the cluster would for an external or load-balancer IP. The route lives in the cluster's
// underlay namespace and is removed when the test ends.
func (s *scenario) underlayRoute(dst string, node int) {
	s.t.Helper()
	via := s.c.Node(node).IP
	if _, err := s.c.Exec(s.ctx, s.c.Underlay, "ip", "route", "replace", dst+"/32", "via", via); err != nil {
		s.t.Fatal(err)
	}
	s.routes[dst] = node
	s.t.Cleanup(func() {
		if _, err := s.c.Exec(s.ctx, s.c.Underlay, "ip", "route", "del", dst+"/32", "via", via); err != nil {
			s.t.Errorf("remove the underlay route to %s: %v", dst, err)
		}
	})
}

// underlayIP is the underlay namespace's own address: the client IP a backend sees for traffic
// from the underlay when it is not masqueraded.
func (s *scenario) underlayIP() string {
	ip := s.c.Node(1).IP
	return ip[:strings.LastIndexByte(ip, '.')] + ".1"
}

// deleteGracefully deletes a Pod with a long grace period: with no kubelet to confirm, it stays
// terminating, which is what the terminating-endpoint scenario needs.
func (s *scenario) deleteGracefully(name string) {
	s.t.Helper()
	err := s.c.Client.CoreV1().Pods(s.ns).Delete(s.ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](3600)})
	if err != nil {
		s.t.Fatalf("delete pod %s/%s gracefully: %v", s.ns, name, err)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
