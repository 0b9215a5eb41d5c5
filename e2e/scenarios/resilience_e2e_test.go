//go:build e2e

package scenarios

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/switchyard/switchyard/e2e/framework/cluster"
)

// requestLoop sends requests to addr from netns one after another, each on a new connection, until
// stopped, and counts what failed. Each request gets a generous timeout: the loop measures whether
// requests are served, not how fast.
type requestLoop struct {
	stop   chan struct{}
	done   chan struct{}
	mu     sync.Mutex
	ok     int
	failed []string
}

func (s *scenario) startLoop(netns, addr string, want ...string) *requestLoop {
	l := &requestLoop{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for {
			select {
			case <-l.stop:
				return
			default:
			}
			a, err := s.get(netns, addr, 5*time.Second)
			l.mu.Lock()
			switch {
			case err != nil:
				l.failed = append(l.failed, fmt.Sprintf("%s: %v", time.Now().Format("15:04:05.000"), err))
			case !contains(want, a.pod):
				l.failed = append(l.failed, fmt.Sprintf("%s: answered by %s, want one of %v", time.Now().Format("15:04:05.000"), a.pod, want))
			default:
				l.ok++
			}
			l.mu.Unlock()
			time.Sleep(50 * time.Millisecond)
		}
	}()
	return l
}

// succeeded returns how many requests were answered so far.
func (l *requestLoop) succeeded() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ok
}

// finish stops the loop and fails t if any request failed or too few were sent to mean anything.
func (l *requestLoop) finish(t *testing.T, minOK int) {
	t.Helper()
	close(l.stop)
	<-l.done
	if len(l.failed) > 0 {
		t.Errorf("%d of %d requests failed:\n%s", len(l.failed), len(l.failed)+l.ok, strings.Join(l.failed, "\n"))
	}
	if l.ok < minOK {
		t.Errorf("only %d requests succeeded; want at least %d for the loop to prove anything", l.ok, minOK)
	}
}

// waitMore waits until the loop has answered n more requests than when it was called.
func (s *scenario) waitMore(l *requestLoop, n int) {
	s.t.Helper()
	base := l.succeeded()
	if err := cluster.WaitFor(s.ctx, converge, fmt.Sprintf("%d more answered requests", n), func(context.Context) (bool, error) {
		return l.succeeded() >= base+n, nil
	}); err != nil {
		s.t.Fatal(err)
	}
}

// webUnderLoad sets up what the scenarios that stop part of the cluster share: webAnswering, and a
// request loop from client's pod to the service that has had 10 answers already.
func webUnderLoad(t *testing.T, ns, client string) (s *scenario, loop *requestLoop, want []string) {
	t.Helper()
	s, _, vip, want := webAnswering(t, ns, client)
	loop = s.startLoop(s.podNS(client), vip, want...)
	s.waitMore(loop, 10)
	return s, loop, want
}

// webAnswering sets up the start of most scenarios here: the service web over web-1 and web-2,
// answering requests from client's pod. vip is its ClusterIP and port, want the pods that answer.
func webAnswering(t *testing.T, ns, client string) (s *scenario, svc *v1.Service, vip string, want []string) {
	t.Helper()
	s = newScenario(t, ns)
	webPods(s)
	svc = s.service("web", map[string]string{"app": "web"}, nil)
	vip = hostPort(svc.Spec.ClusterIP, 80)
	want = []string{s.qualified("web-1"), s.qualified("web-2")}
	s.waitAnswers(s.podNS(client), vip, want...)
	return s, svc, vip, want
}

// fatalIf stops the loop without judging its requests and ends the test when err is not nil.
func (l *requestLoop) fatalIf(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		l.finish(t, 0)
		t.Fatal(err)
	}
}

// Restarting switchyard on the client's node does not interrupt service traffic: its rules stay in
// place while it is down, and the restart re-syncs without flushing them. The backends sit on both
// the client's node and another one, so the restarted pod network is exercised too.
func TestRestartUnderLoad(t *testing.T) {
	s, loop, _ := webUnderLoad(t, "e2e-restart", "client-1")
	loop.fatalIf(t, s.c.StopProcess(s.ctx, s.c.ProxyProcess(1)))
	s.waitMore(loop, 10) // served with switchyard down
	loop.fatalIf(t, s.c.Restart(s.ctx))
	// Restart returns once switchyard reports healthy, i.e. after its first sync.
	s.waitMore(loop, 20)
	loop.finish(t, 40)
}

// With the API server stopped for 30 s, traffic keeps flowing on the rules already in place; once
// it is back, switchyard's watches resume and new changes reach the rules again.
func TestAPIServerOutage(t *testing.T) {
	s, loop, want := webUnderLoad(t, "e2e-apiserver", "client-3")
	loop.fatalIf(t, s.c.StopProcess(s.ctx, cluster.ProcessAPIServer))
	// The outage's length is the scenario, not an assertion.
	time.Sleep(30 * time.Second)
	loop.fatalIf(t, s.c.Restart(s.ctx))
	s.waitMore(loop, 10)
	loop.finish(t, 50)

	// Reconciled after the outage: a service created now gets rules and answers on every node.
	// It has no selector and its EndpointSlice is written here, so the check depends on
	// switchyard's watches resuming, not on how fast kube-controller-manager recovers (its
	// EndpointSlice controller reports "informer cache is out of date" for a while after an
	// API server restart).
	after := s.service("after", nil, nil)
	s.endpointSlice(after, "web-1", "web-2")
	for _, client := range []string{"client-1", "client-3"} {
		s.waitAnswers(s.podNS(client), hostPort(after.Spec.ClusterIP, 80), want...)
	}

	// Leave the control plane as the next scenario expects it: the EndpointSlice controller
	// publishing again for selector services.
	back := time.Now()
	probe := s.service("probe", map[string]string{"app": "web"}, nil)
	err := cluster.WaitFor(s.ctx, 3*time.Minute, "kube-controller-manager to publish EndpointSlices again", func(context.Context) (bool, error) {
		slices, err := s.c.Client.DiscoveryV1().EndpointSlices(s.ns).List(s.ctx, metav1.ListOptions{
			LabelSelector: discoveryv1.LabelServiceName + "=" + probe.Name})
		if err != nil {
			return false, nil
		}
		n := 0
		for _, sl := range slices.Items {
			n += len(sl.Endpoints)
		}
		return n == 2, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kube-controller-manager published a new service's endpoints %s after the check started", time.Since(back).Round(100*time.Millisecond))
}

// endpointSlice publishes, for a service without a selector, one ready endpoint per named pod of
// the scenario on the echo server's port.
func (s *scenario) endpointSlice(svc *v1.Service, pods ...string) {
	s.t.Helper()
	var endpoints []cluster.Endpoint
	for _, name := range pods {
		p := s.pods[name]
		endpoints = append(endpoints, cluster.Endpoint{IP: p.ip, Node: s.c.Node(p.node).Name})
	}
	slice := cluster.EchoEndpointSlice(s.ns, svc.Name+"-manual", svc.Name, "e2e-scenarios", endpoints...)
	if _, err := s.c.Client.DiscoveryV1().EndpointSlices(s.ns).Create(s.ctx, slice, metav1.CreateOptions{}); err != nil {
		s.t.Fatalf("create EndpointSlice for %s/%s: %v", s.ns, svc.Name, err)
	}
	s.t.Cleanup(func() {
		err := s.c.Client.DiscoveryV1().EndpointSlices(s.ns).Delete(s.ctx, slice.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			s.t.Errorf("delete EndpointSlice %s/%s: %v", s.ns, slice.Name, err)
		}
	})
}

// An administrator removing every one of switchyard's proxy chains from a node's nat table (the
// canary chain with them) is repaired by the next periodic sync, within the sync period (the suite
// starts switchyard with a short one). The pod network's own SY-POD-* chains are left alone: they
// belong to the overlay's resync, not the proxy's.
func TestDeletedChainsRestored(t *testing.T) {
	s, svc, vip, want := webAnswering(t, "e2e-chains", "client-1")
	period, err := syncPeriodOf(s.c, 1)
	if err != nil {
		t.Fatal(err)
	}

	nat, err := s.natRules(1)
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, line := range strings.Split(nat, "\n") {
		if strings.Contains(strings.ReplaceAll(line, "SY-POD-", ""), "SY-") {
			continue // a chain of the proxy's, or a rule using one
		}
		kept = append(kept, line)
	}
	// iptables-restore without --noflush replaces the tables its input names: here only nat.
	restore := exec.CommandContext(s.ctx, "ip", "netns", "exec", s.c.Node(1).Name, "iptables-restore")
	restore.Stdin = strings.NewReader(strings.Join(kept, "\n"))
	if out, err := restore.CombinedOutput(); err != nil {
		t.Fatalf("replace node 1's nat table without switchyard's chains: %v: %s", err, out)
	}
	deleted := time.Now()
	if nat, err := s.natRules(1); err != nil || strings.Contains(nat, ":SY-SERVICES ") {
		t.Fatalf("node 1's nat table still has SY-SERVICES after the deletion (%v):\n%s", err, nat)
	}
	// The chains and their hooks come back by the next periodic sync. The ceiling adds a margin
	// for a sync already under way and for the loaded machine; the time taken is logged.
	jump := "-A %s -m comment --comment \"switchyard service portals\" -j SY-SERVICES"
	err = cluster.WaitFor(s.ctx, period+15*time.Second, "switchyard's nat chains and hooks restored on node 1", func(context.Context) (bool, error) {
		nat, err := s.natRules(1)
		if err != nil {
			return false, err
		}
		return strings.Contains(nat, fmt.Sprintf(jump, "PREROUTING")) && strings.Contains(nat, fmt.Sprintf(jump, "OUTPUT")) &&
			strings.Contains(nat, ":SY-PROXY-CANARY ") && strings.Contains(nat, "-A SY-SERVICES ") &&
			strings.Contains(nat, "-j SY-POSTROUTING") && strings.Contains(nat, svc.Spec.ClusterIP+"/32"), nil
	})
	if err != nil {
		t.Fatalf("%v (sync period %s)", err, period)
	}
	t.Logf("restored %s after the deletion (sync period %s)", time.Since(deleted).Round(100*time.Millisecond), period)
	s.waitAnswers(s.podNS("client-1"), vip, want...)
}

// An administrator deleting one of switchyard's chains by hand, the nat SY-SERVICES dispatch chain
// after the PREROUTING and OUTPUT jumps to it, while the canary stays, is repaired: the proxier
// looks for its fixed chains once per sync period even when the canary says nothing was flushed.
// A ClusterIP request from a pod on that node works again within about two sync periods (one to
// notice, with margin for a sync under way on the loaded machine).
func TestDeletedServicesChainRestored(t *testing.T) {
	s, _, vip, want := webAnswering(t, "e2e-one-chain", "client-1")
	period, err := syncPeriodOf(s.c, 1)
	if err != nil {
		t.Fatal(err)
	}

	const comment = "switchyard service portals"
	deleteChain := [][]string{
		{"iptables", "-t", "nat", "-D", "PREROUTING", "-m", "comment", "--comment", comment, "-j", "SY-SERVICES"},
		{"iptables", "-t", "nat", "-D", "OUTPUT", "-m", "comment", "--comment", comment, "-j", "SY-SERVICES"},
		{"iptables", "-t", "nat", "-F", "SY-SERVICES"},
		{"iptables", "-t", "nat", "-X", "SY-SERVICES"},
	}
	for _, argv := range deleteChain {
		if _, err := s.c.NodeExec(s.ctx, 1, argv...); err != nil {
			t.Fatalf("delete nat SY-SERVICES on node 1: %v", err)
		}
	}
	deleted := time.Now()
	nat, err := s.natRules(1)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(nat, ":SY-SERVICES ") || strings.Contains(nat, "-j SY-SERVICES") {
		t.Fatalf("node 1's nat table still has SY-SERVICES or a jump to it after the deletion:\n%s", nat)
	}
	if !strings.Contains(nat, ":SY-PROXY-CANARY ") {
		t.Fatalf("the deletion took the canary with it, so this would test the flush case instead:\n%s", nat)
	}

	var last error
	within := 2 * period
	err = cluster.WaitFor(s.ctx, within, fmt.Sprintf("%s answered from client-1 after nat SY-SERVICES was deleted", vip),
		func(context.Context) (bool, error) {
			a, err := s.get(s.podNS("client-1"), vip, time.Second)
			if err != nil {
				last = err
				return false, nil
			}
			if !contains(want, a.pod) {
				return false, fmt.Errorf("answered by %s; want one of %v", a.pod, want)
			}
			return true, nil
		})
	if err != nil {
		nat, _ := s.natRules(1)
		t.Fatalf("%v (sync period %s, last error %v); node 1's nat table now:\n%s", err, period, last, nat)
	}
	t.Logf("answered again %s after the deletion (sync period %s)", time.Since(deleted).Round(100*time.Millisecond), period)
	s.waitAnswers(s.podNS("client-1"), vip, want...)
}
