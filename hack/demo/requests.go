package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/switchyard/switchyard/e2e/framework/cluster"
)

// results is everything the report prints.
type results struct {
	env       *env
	nodes     int
	proxyMode string
	groups    []*group
	health    []healthResult
	rules     []nodeRules
	ipvs      ipvsRender
	explained []explained
}

// group is one kind of request (a service through one entry point, from one client) and what
// each request got.
type group struct {
	title string // what was asked, from where
	why   string // the one-line explanation of what the answers should show
	rows  []row
}

// row is one request.
type row struct {
	ans  answer
	err  error // no answer
	ok   bool
	note string // which rule it broke, when !ok
}

func (r *results) failures() int {
	n := 0
	for _, g := range r.groups {
		for _, row := range g.rows {
			if !row.ok {
				n++
			}
		}
	}
	for _, h := range r.health {
		if h.err != nil {
			n++
		}
	}
	for _, x := range r.explained {
		if !x.ok {
			n++
		}
	}
	return n
}

func (r *results) checks() int {
	n := len(r.health) + len(r.explained)
	for _, g := range r.groups {
		n += len(g.rows)
	}
	return n
}

// expectation is what a request may get back under the service's policy.
type expectation struct {
	pods     map[string]bool // pods allowed to answer
	clients  map[string]bool // client IPs the pod may see
	noAnswer bool            // the request must get no answer at all
}

func (x expectation) check(a answer, err error) (bool, string) {
	if x.noAnswer {
		if err == nil {
			return false, "answered, but this node has no local endpoint and must drop it"
		}
		// kube-proxy drops such packets (no REJECT: the client should time out and the load
		// balancer's health check steers traffic away), so only a timeout passes.
		if msg := err.Error(); !strings.Contains(msg, "Timeout exceeded") && !strings.Contains(msg, "i/o timeout") &&
			!strings.Contains(msg, "deadline exceeded") {
			return false, "refused instead of dropped: " + shorten(msg)
		}
		return true, "dropped, as it must be"
	}
	if err != nil {
		return false, "no answer: " + err.Error()
	}
	if !x.pods[a.Pod] {
		return false, fmt.Sprintf("%s may not answer here (allowed: %s)", a.Pod, strings.Join(keys(x.pods), ", "))
	}
	if !x.clients[a.ClientIP()] {
		return false, fmt.Sprintf("client address %s is wrong (want %s)", a.ClientIP(), strings.Join(keys(x.clients), " or "))
	}
	return true, ""
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func set(items ...string) map[string]bool {
	m := map[string]bool{}
	for _, i := range items {
		m[i] = true
	}
	return m
}

// webPods lists the web pods, on node i only when i > 0.
func (e *env) webPods(i int) map[string]bool {
	m := map[string]bool{}
	for _, dp := range demoPods {
		if dp.App == "web" && (i == 0 || dp.Node == i) {
			m[podKey(dp.Name)] = true
		}
	}
	return m
}

// sendRequests sends the reported requests and checks each answer.
func (e *env) sendRequests(ctx context.Context, n int) []*group {
	client := podKey(clientPod)
	clientNS := cluster.PodNetNS(demoNamespace, clientPod)
	clientNode := e.c.Node(e.podNode[client]).Name
	n1, n3 := e.c.Node(1), e.c.Node(3)
	underlay := set(e.underlay...)
	var groups []*group
	add := func(title, why, netns, kind, target string, count int, x expectation) {
		g := &group{title: title, why: why}
		for i := 0; i < count && ctx.Err() == nil; i++ {
			timeout := 3 * time.Second
			if x.noAnswer {
				timeout = 2 * time.Second
			}
			a, err := e.probe.echo(ctx, netns, kind, target, timeout)
			ok, note := x.check(a, err)
			g.rows = append(g.rows, row{ans: a, err: err, ok: ok, note: note})
		}
		groups = append(groups, g)
	}

	add(fmt.Sprintf("ClusterIP %s (%s TCP) from pod %s on %s", svcClusterIP, e.clusterTarget(svcClusterIP), client, clientNode),
		"source preserved: pod to pod through a ClusterIP is only DNATed, and crosses the VXLAN overlay unchanged",
		clientNS, "tcp", e.clusterTarget(svcClusterIP), n,
		expectation{pods: e.webPods(0), clients: set(e.podIP[client])})
	add(fmt.Sprintf("ClusterIP %s (%s UDP) from pod %s on %s", svcUDP, e.clusterTarget(svcUDP), client, clientNode),
		"source preserved: UDP is DNATed the same way; each datagram from a new port is balanced anew",
		clientNS, "udp", e.clusterTarget(svcUDP), n,
		expectation{pods: e.webPods(0), clients: set(e.podIP[client])})
	add(fmt.Sprintf("NodePort %s (%s, externalTrafficPolicy=Cluster) from the underlay to %s, which has no web pod",
		svcNodePort, e.nodePortTarget(svcNodePort, 1), n1.Name),
		"masqueraded: with eTP=Cluster the node may forward to a pod on another node, so it SNATs to its own address\n"+
			"   (that of the device the packet leaves by: the VXLAN device for another node) and the replies come back through it",
		e.c.Underlay, "tcp", e.nodePortTarget(svcNodePort, 1), n,
		expectation{pods: e.webPods(0), clients: set(e.nodeAddr[1]...)})
	add(fmt.Sprintf("LoadBalancer %s's node port (%s, externalTrafficPolicy=Local) from the underlay to %s",
		svcLocal, e.nodePortTarget(svcLocal, 3), n3.Name),
		"source preserved: eTP=Local sends only to this node's own pods, so no SNAT is needed and the client IP survives",
		e.c.Underlay, "tcp", e.nodePortTarget(svcLocal, 3), n,
		expectation{pods: e.webPods(3), clients: underlay})
	add(fmt.Sprintf("LoadBalancer %s's node port (%s, externalTrafficPolicy=Local) from the underlay to %s, which has no web pod",
		svcLocal, e.nodePortTarget(svcLocal, 1), n1.Name),
		"dropped: eTP=Local never forwards to another node; its health check port (below) tells load balancers to avoid this node",
		e.c.Underlay, "tcp", e.nodePortTarget(svcLocal, 1), 1,
		expectation{noAnswer: true})
	return groups
}
