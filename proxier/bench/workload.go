// Package bench measures Switchyard's backends on synthetic workloads: how large a ruleset each one
// renders, how long rendering takes and how much it allocates and, with a kernel, how long applying
// takes and what a new connection's first packet pays. Everything it reports comes from the
// backends' own render and sync code; nothing here counts or applies rules by other means.
package bench

import (
	"fmt"
	"net/netip"

	"github.com/switchyard/switchyard/proxier/model"
)

// Address plan of the synthetic cluster. ClusterIPs come from a /12 and endpoints from a /10 so that
// even the largest workloads get distinct addresses; the lab routes the whole endpoint range to one
// backend namespace that answers on all of it.
var (
	ServiceCIDR  = netip.MustParsePrefix("10.96.0.0/12")
	EndpointCIDR = netip.MustParsePrefix("10.128.0.0/10")
	// NodePodCIDR is this node's share of EndpointCIDR (kept out of the endpoints handed out).
	NodePodCIDR = netip.MustParsePrefix("10.191.255.0/24")
)

const (
	// NodeName is the node the workload is rendered for.
	NodeName = "node-0"
	// MinNodes is the smallest cluster the endpoints are spread over (see Nodes).
	MinNodes = 20
	// PodsPerNode bounds the endpoints that land on one node, as kubelet's default of 110 pods does.
	PodsPerNode = 100
	// ServicePort and TargetPort are every service's port and its endpoints' port (TCP).
	ServicePort = 80
	TargetPort  = 8080
	// FirstNodePort is the first NodePort handed out; NodePorts are sequential from it.
	FirstNodePort = 30000
)

// Workload describes a synthetic cluster. Shares are fractions in [0, 1], spread evenly over the
// services (not random), so the same workload always renders the same rules.
type Workload struct {
	Services            int
	EndpointsPerService int
	// NodePortShare of the services are NodePort services; the rest are ClusterIP.
	NodePortShare float64
	// AffinityShare of the services have sessionAffinity ClientIP.
	AffinityShare float64
	// LocalShare of the services have a Local traffic policy: externalTrafficPolicy for NodePort
	// services, internalTrafficPolicy for ClusterIP ones.
	LocalShare float64
}

// Validate reports a workload that cannot be synthesised.
func (w Workload) Validate() error {
	if w.Services < 1 {
		return fmt.Errorf("services must be at least 1, not %d", w.Services)
	}
	if w.EndpointsPerService < 1 {
		return fmt.Errorf("endpoints per service must be at least 1, not %d", w.EndpointsPerService)
	}
	for name, s := range map[string]float64{"nodeport": w.NodePortShare, "affinity": w.AffinityShare, "local": w.LocalShare} {
		if s < 0 || s > 1 {
			return fmt.Errorf("%s share %v is not between 0 and 1", name, s)
		}
	}
	if max := 1<<(32-ServiceCIDR.Bits()) - 2; w.Services > max {
		return fmt.Errorf("%d services do not fit in %s (at most %d)", w.Services, ServiceCIDR, max)
	}
	if max := 1<<(32-EndpointCIDR.Bits()) - 512; w.Services*w.EndpointsPerService > max {
		return fmt.Errorf("%d endpoints do not fit in %s (at most %d)", w.Services*w.EndpointsPerService, EndpointCIDR, max)
	}
	if n := spread(w.NodePortShare, w.Services); n > 65535-FirstNodePort+1 {
		return fmt.Errorf("%d NodePort services need more ports than %d-65535 holds", n, FirstNodePort)
	}
	return nil
}

// spread counts the services, out of n, that a share picks.
func spread(share float64, n int) int {
	c := 0
	for i := 0; i < n; i++ {
		if picked(share, i) {
			c++
		}
	}
	return c
}

// picked reports whether service i is among the share: the picks are spread evenly, so any prefix of
// the services holds about the same share.
func picked(share float64, i int) bool {
	return int(float64(i+1)*share) > int(float64(i)*share)
}

// nthAddr is the n-th address of p (0 is p's first address).
func nthAddr(p netip.Prefix, n int) netip.Addr {
	b := p.Masked().Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(n)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// ServiceName is the name of service i. Names sort in index order, and ClusterIPs rise with the
// index, so service 0 is the first in every backend's tables and the last service the last.
func ServiceName(i int) model.ServicePortName {
	return model.ServicePortName{ServiceKey: model.ServiceKey{Namespace: "bench", Name: fmt.Sprintf("svc-%07d", i)}, Port: "http"}
}

// ClusterIP is service i's ClusterIP.
func ClusterIP(i int) netip.Addr { return nthAddr(ServiceCIDR, i+1) }

// endpointIP is the k-th endpoint address handed out.
func endpointIP(k int) netip.Addr { return nthAddr(EndpointCIDR, k+1) }

// Nodes is how many nodes w's endpoints are spread over, round robin: at least MinNodes, and enough
// that no node holds more than PodsPerNode of them, as in a real cluster of that size. The number
// matters because this node's endpoints are the ones its hairpin rules are for.
func (w Workload) Nodes() int {
	return max(MinNodes, (w.Services*w.EndpointsPerService+PodsPerNode-1)/PodsPerNode)
}

// endpointAt is the k-th endpoint of the workload, on node k mod nodes: this node's endpoints take
// addresses from its pod CIDR, the others from the rest of EndpointCIDR.
func endpointAt(k, nodes int) model.Endpoint {
	node := k % nodes
	ip := endpointIP(k)
	if node == 0 {
		ip = nthAddr(NodePodCIDR, 2+k/nodes)
	}
	return model.Endpoint{IP: ip, Port: TargetPort, Ready: true, Serving: true, NodeName: fmt.Sprintf("node-%d", node)}
}

// Node returns the node facts the workload is rendered for.
func Node() model.NodeInfo {
	return model.NodeInfo{Name: NodeName, PodCIDRs: []netip.Prefix{NodePodCIDR}}
}

// Synthesize builds the snapshot of w: a full snapshot, as a proxy's first sync sees it.
func Synthesize(w Workload) (*model.Snapshot, error) {
	if err := w.Validate(); err != nil {
		return nil, err
	}
	s := model.NewSnapshot()
	s.Full = true
	s.Node = Node()
	nodePorts, nodes := 0, w.Nodes()
	for i := 0; i < w.Services; i++ {
		name := ServiceName(i)
		svc := &model.ServicePort{Name: name, Protocol: model.TCP, Port: ServicePort,
			ClusterIPs: []netip.Addr{ClusterIP(i)}, ExternalPolicy: model.PolicyCluster, InternalPolicy: model.PolicyCluster}
		nodePort := picked(w.NodePortShare, i)
		if nodePort {
			svc.NodePort = int32(FirstNodePort + nodePorts)
			nodePorts++
		}
		if picked(w.AffinityShare, i) {
			svc.Affinity = model.SessionAffinity{ClientIP: true, TimeoutSeconds: 10800}
		}
		if picked(w.LocalShare, i) {
			if nodePort {
				svc.ExternalPolicy = model.PolicyLocal
			} else {
				svc.InternalPolicy = model.PolicyLocal
			}
		}
		eps := make([]model.Endpoint, w.EndpointsPerService)
		for j := range eps {
			eps[j] = endpointAt(i*w.EndpointsPerService+j, nodes)
		}
		s.Services[name] = svc
		s.Endpoints[name] = eps
	}
	return s, nil
}

// ChangeOneEndpoint returns the snapshot that follows snap when one endpoint of the middle service,
// on another node, moves to a fresh address: the commonest steady-state change (a pod replaced
// somewhere in the cluster). snap is left as it was. generation picks the fresh address, so
// successive changes differ.
func ChangeOneEndpoint(snap *model.Snapshot, generation int) *model.Snapshot {
	next := &model.Snapshot{Services: snap.Services, Endpoints: make(map[model.ServicePortName][]model.Endpoint, len(snap.Endpoints)),
		Node: snap.Node, Changed: map[model.ServiceKey]struct{}{}}
	for k, v := range snap.Endpoints {
		next.Endpoints[k] = v
	}
	name := ServiceName(len(snap.Services) / 2)
	eps := append([]model.Endpoint(nil), snap.Endpoints[name]...)
	j := 0
	for j < len(eps)-1 && eps[j].NodeName == snap.Node.Name {
		j++
	}
	// Fresh addresses come from the top of the endpoint range, below this node's pod CIDR.
	eps[j].IP = nthAddr(EndpointCIDR, 1<<(32-EndpointCIDR.Bits())-512+generation%256)
	next.Endpoints[name] = eps
	next.Changed[name.ServiceKey] = struct{}{}
	return next
}
