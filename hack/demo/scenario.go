package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"sort"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/switchyard/switchyard/e2e/framework/cluster"
)

// demoNamespace holds every object the demo creates, so a reused cluster can be cleaned of them.
const demoNamespace = "demo"

// demoPod is one echo pod of the demo. The client sits alone on node 1, so every request to a
// ClusterIP crosses the VXLAN overlay to another node; node 3 has two web pods, so
// externalTrafficPolicy=Local on it still has a choice to make.
type demoPod struct {
	Name string
	Node int
	App  string
}

var demoPods = []demoPod{
	{Name: "client-1", Node: 1, App: "client"},
	{Name: "web-2", Node: 2, App: "web"},
	{Name: "web-3a", Node: 3, App: "web"},
	{Name: "web-3b", Node: 3, App: "web"},
}

const clientPod = "client-1"

// Services of the demo, all selecting app=web (the echo servers listen on 8080, TCP and UDP).
const (
	svcClusterIP = "web"
	svcUDP       = "web-udp"
	svcNodePort  = "web-nodeport"
	svcLocal     = "web-local"
)

// env is what the scenario learned about the running cluster.
type env struct {
	c        *cluster.Cluster
	probe    *prober
	podIP    map[string]string           // "demo/web-2" -> IP
	podNode  map[string]int              // "demo/web-2" -> node index
	addrName map[string]string           // IP -> what owns it ("demo/client-1", "sy-node-1 flannel.1", ...)
	nodeAddr map[int][]string            // node index -> its IPv4 addresses
	nodeNets map[int]map[string][]string // node index -> device -> its IPv4 address/prefix
	underlay []string                    // the underlay namespace's addresses (its client requests come from one)
	services map[string]*v1.Service
}

func podKey(name string) string { return demoNamespace + "/" + name }

// runDemo creates the pods and services, waits until every node has programmed them, sends the
// requests and gathers the results.
func runDemo(ctx context.Context, c *cluster.Cluster, opts options) (*results, error) {
	p, err := newProber()
	if err != nil {
		return nil, err
	}
	e := &env{c: c, probe: p, podIP: map[string]string{}, podNode: map[string]int{},
		addrName: map[string]string{}, nodeAddr: map[int][]string{}, nodeNets: map[int]map[string][]string{},
		services: map[string]*v1.Service{}}

	step("starting %d echo pods in namespace %q, wired by switchyard-cni", len(demoPods), demoNamespace)
	for _, dp := range demoPods {
		ip, err := c.AddEchoPod(ctx, dp.Node, demoNamespace, dp.Name, map[string]string{"app": dp.App})
		if err != nil {
			return nil, fmt.Errorf("start pod %s on %s: %w", podKey(dp.Name), c.Node(dp.Node).Name, err)
		}
		e.podIP[podKey(dp.Name)] = ip
		e.podNode[podKey(dp.Name)] = dp.Node
		e.addrName[ip] = podKey(dp.Name)
	}
	if err := e.learnAddresses(ctx); err != nil {
		return nil, err
	}

	step("creating services: ClusterIP %s, UDP %s, NodePort %s (eTP=Cluster), LoadBalancer %s (eTP=Local: node port and health check port)",
		svcClusterIP, svcUDP, svcNodePort, svcLocal)
	if err := e.createServices(ctx); err != nil {
		return nil, err
	}
	step("waiting for the EndpointSlice controller to publish the web pods")
	if err := e.waitForSlices(ctx); err != nil {
		return nil, err
	}
	step("waiting for switchyard on every node to program the services")
	if err := e.waitForRules(ctx); err != nil {
		return nil, err
	}

	step("sending requests")
	res := &results{env: e, nodes: len(c.Nodes), proxyMode: c.ProxyMode}
	res.groups = e.sendRequests(ctx, opts.requests)
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	res.health = e.healthChecks(ctx)
	step("asking switchyard explain about two of those requests")
	res.explained = e.explainRequests(ctx)
	step("counting rules")
	res.rules = e.countRules(ctx)
	res.ipvs = renderIPVS(ctx, c, e.nodeNets[1])
	return res, ctx.Err()
}

// learnAddresses records each node's and the underlay's IPv4 addresses, to name the client
// addresses the pods report.
func (e *env) learnAddresses(ctx context.Context) error {
	for _, n := range e.c.Nodes {
		addrs, err := e.addresses(ctx, n.Name)
		if err != nil {
			return err
		}
		e.nodeNets[n.Index] = map[string][]string{}
		for ip, a := range addrs {
			e.addrName[ip] = n.Name + " " + a.dev
			e.nodeAddr[n.Index] = append(e.nodeAddr[n.Index], ip)
			e.nodeNets[n.Index][a.dev] = append(e.nodeNets[n.Index][a.dev], a.cidr)
		}
	}
	addrs, err := e.addresses(ctx, e.c.Underlay)
	if err != nil {
		return err
	}
	for ip, a := range addrs {
		e.addrName[ip] = "the underlay (" + a.dev + ")"
		e.underlay = append(e.underlay, ip)
	}
	if len(e.underlay) == 0 {
		return fmt.Errorf("the underlay namespace %s has no IPv4 address", e.c.Underlay)
	}
	return nil
}

// ifAddr is an address's device and its address/prefix form.
type ifAddr struct {
	dev, cidr string
}

// addresses lists a namespace's IPv4 addresses (not loopback) with their devices.
func (e *env) addresses(ctx context.Context, netns string) (map[string]ifAddr, error) {
	out, err := e.c.Exec(ctx, netns, "ip", "-o", "-4", "addr", "show")
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	addrs := map[string]ifAddr{}
	for _, line := range strings.Split(out, "\n") {
		// "4: eth0    inet 192.168.50.11/24 brd ... scope global eth0"
		f := strings.Fields(line)
		if len(f) < 4 || f[2] != "inet" || f[1] == "lo" {
			continue
		}
		ip, _, err := net.ParseCIDR(f[3])
		if err != nil {
			continue
		}
		addrs[ip.String()] = ifAddr{dev: f[1], cidr: f[3]}
	}
	return addrs, nil
}

func (e *env) createServices(ctx context.Context) error {
	if err := e.c.EnsureNamespace(ctx, demoNamespace); err != nil {
		return err
	}
	specs := []*v1.Service{
		service(svcClusterIP, v1.ServiceTypeClusterIP, v1.ProtocolTCP, 80, ""),
		service(svcUDP, v1.ServiceTypeClusterIP, v1.ProtocolUDP, 53, ""),
		service(svcNodePort, v1.ServiceTypeNodePort, v1.ProtocolTCP, 80, v1.ServiceExternalTrafficPolicyCluster),
		// Type LoadBalancer, not NodePort: only a load-balancer service with eTP=Local gets a
		// healthCheckNodePort. No cloud runs here, so it stays a node port plus that health check.
		service(svcLocal, v1.ServiceTypeLoadBalancer, v1.ProtocolTCP, 80, v1.ServiceExternalTrafficPolicyLocal),
	}
	svcs := e.c.Client.CoreV1().Services(demoNamespace)
	for _, s := range specs {
		// A kept earlier run may have left the service: start from the spec above again.
		if err := svcs.Delete(ctx, s.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete old service %s: %w", s.Name, err)
		}
		got, err := svcs.Create(ctx, s, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("create service %s/%s: %w", demoNamespace, s.Name, err)
		}
		e.services[s.Name] = got
	}
	return nil
}

// service is a Service selecting app=web on the echo servers' port 8080. Node ports are left to
// the API server to allocate, so they never collide with anything else on the cluster.
func service(name string, typ v1.ServiceType, proto v1.Protocol, port int32, etp v1.ServiceExternalTrafficPolicy) *v1.Service {
	s := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: demoNamespace},
		Spec: v1.ServiceSpec{
			Type:     typ,
			Selector: map[string]string{"app": "web"},
			Ports: []v1.ServicePort{{Name: strings.ToLower(string(proto)), Protocol: proto, Port: port,
				TargetPort: intstr.FromInt32(8080)}},
		},
	}
	if etp != "" {
		s.Spec.ExternalTrafficPolicy = etp
	}
	return s
}

// waitForSlices waits until each service's EndpointSlices list every web pod as ready.
func (e *env) waitForSlices(ctx context.Context) error {
	want := 0
	for _, dp := range demoPods {
		if dp.App == "web" {
			want++
		}
	}
	for name := range e.services {
		err := cluster.WaitFor(ctx, 60*time.Second, "EndpointSlices of "+name, func(ctx context.Context) (bool, error) {
			list, err := e.c.Client.DiscoveryV1().EndpointSlices(demoNamespace).List(ctx, metav1.ListOptions{
				LabelSelector: discoveryv1.LabelServiceName + "=" + name})
			if err != nil {
				return false, nil // the API server may be briefly busy; keep waiting
			}
			ready := 0
			for _, sl := range list.Items {
				for _, ep := range sl.Endpoints {
					if ptr.Deref(ep.Conditions.Ready, false) {
						ready += len(ep.Addresses)
					}
				}
			}
			return ready == want, nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// waitForRules waits until every entry point the demo uses answers, and until each node's health
// check server for the eTP=Local service reports its local endpoints: then each node has synced
// the services and their endpoints. The requests that are reported come after this.
func (e *env) waitForRules(ctx context.Context) error {
	client := cluster.PodNetNS(demoNamespace, clientPod)
	waits := []struct {
		desc, netns, kind, target string
	}{
		{"ClusterIP " + svcClusterIP + " from " + podKey(clientPod), client, "tcp", e.clusterTarget(svcClusterIP)},
		{"UDP ClusterIP " + svcUDP + " from " + podKey(clientPod), client, "udp", e.clusterTarget(svcUDP)},
		{"NodePort " + svcLocal + " on " + e.c.Node(3).Name, e.c.Underlay, "tcp", e.nodePortTarget(svcLocal, 3)},
	}
	for _, n := range e.c.Nodes {
		waits = append(waits, struct{ desc, netns, kind, target string }{
			"NodePort " + svcNodePort + " on " + n.Name, e.c.Underlay, "tcp", e.nodePortTarget(svcNodePort, n.Index)})
	}
	for _, w := range waits {
		var last error
		began := time.Now()
		err := cluster.WaitFor(ctx, 60*time.Second, w.desc, func(ctx context.Context) (bool, error) {
			_, last = e.probe.echo(ctx, w.netns, w.kind, w.target, 2*time.Second)
			return last == nil, nil
		})
		if err != nil {
			return fmt.Errorf("%w (last try: %v)", err, last)
		}
		if d := time.Since(began); d > 5*time.Second {
			step("%s answered after %s", w.desc, d.Round(100*time.Millisecond))
		}
	}
	for _, n := range e.c.Nodes {
		want := e.localWebPods(n.Index)
		var last healthResult
		err := cluster.WaitFor(ctx, 60*time.Second, fmt.Sprintf("health check of %s on %s to report %d local endpoints", svcLocal, n.Name, want),
			func(ctx context.Context) (bool, error) {
				last = e.healthCheck(ctx, n.Index)
				return last.err == nil && last.local == want, nil
			})
		if err != nil {
			return fmt.Errorf("%w (last answer: HTTP %d, localEndpoints=%d, error %v)", err, last.status, last.local, last.err)
		}
	}
	return nil
}

// localWebPods counts the web pods on node i.
func (e *env) localWebPods(i int) int {
	n := 0
	for _, dp := range demoPods {
		if dp.App == "web" && dp.Node == i {
			n++
		}
	}
	return n
}

func (e *env) clusterTarget(name string) string {
	s := e.services[name]
	return net.JoinHostPort(s.Spec.ClusterIP, fmt.Sprint(s.Spec.Ports[0].Port))
}

func (e *env) nodePortTarget(name string, node int) string {
	s := e.services[name]
	return net.JoinHostPort(e.c.Node(node).IP, fmt.Sprint(s.Spec.Ports[0].NodePort))
}

// healthResult is one node's answer on the eTP=Local service's healthCheckNodePort.
type healthResult struct {
	node   string
	status int
	local  int
	err    error
}

func (e *env) healthCheck(ctx context.Context, i int) healthResult {
	s := e.services[svcLocal]
	h := healthResult{node: e.c.Node(i).Name, local: -1}
	url := fmt.Sprintf("http://%s/healthz", net.JoinHostPort(e.c.Node(i).IP, fmt.Sprint(s.Spec.HealthCheckNodePort)))
	out, err := e.probe.raw(ctx, e.c.Underlay, "get", url, 2*time.Second)
	if err != nil {
		h.err = err
		return h
	}
	code, body, _ := strings.Cut(out, " ")
	if _, err := fmt.Sscan(code, &h.status); err != nil {
		h.err = fmt.Errorf("status %q: %w", code, err)
		return h
	}
	var v struct {
		LocalEndpoints int `json:"localEndpoints"`
	}
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		h.err = fmt.Errorf("health check body %q: %w", body, err)
		return h
	}
	h.local = v.LocalEndpoints
	return h
}

// healthChecks asks every node about the eTP=Local service, as a load balancer would. A node with
// local endpoints answers 200, one without answers 503 so that the balancer skips it.
func (e *env) healthChecks(ctx context.Context) []healthResult {
	var out []healthResult
	for _, n := range e.c.Nodes {
		h := e.healthCheck(ctx, n.Index)
		want := e.localWebPods(n.Index)
		wantStatus := 200
		if want == 0 {
			wantStatus = 503
		}
		if h.err == nil && (h.local != want || h.status != wantStatus) {
			h.err = fmt.Errorf("want %d with %d local endpoints", wantStatus, want)
		}
		out = append(out, h)
	}
	return out
}

// removeDemoObjects removes the demo's pods (namespaces, servers, Pod objects) and services from a
// cluster that stays up.
func removeDemoObjects(ctx context.Context, c *cluster.Cluster) error {
	var errs []string
	for _, dp := range demoPods {
		if err := c.RemoveEchoPod(ctx, dp.Node, demoNamespace, dp.Name); err != nil {
			errs = append(errs, err.Error())
		}
	}
	for _, name := range []string{svcClusterIP, svcUDP, svcNodePort, svcLocal} {
		err := c.Client.CoreV1().Services(demoNamespace).Delete(ctx, name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Sprintf("delete service %s: %v", name, err))
		}
	}
	if len(errs) > 0 {
		sort.Strings(errs)
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}
