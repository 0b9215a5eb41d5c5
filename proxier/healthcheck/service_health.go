package healthcheck

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strconv"
	"sync"

	"k8s.io/utils/clock"

	"github.com/switchyard/switchyard/proxier/model"
)

// ServiceHealth runs one HTTP server per service that has a healthCheckNodePort. Each answers 200 when
// this node has a ready local endpoint for the service and the proxy is healthy, and 503 otherwise, with
// kube-proxy's JSON body, so cloud load balancers send eTP=Local traffic only to nodes that can serve
// it. Safe for concurrent use.
type ServiceHealth struct {
	clock    clock.Clock
	listener Listener
	proxy    *ProxyHealth
	// addrs are the host parts to listen on, one server per address; [""] means all addresses.
	addrs []string

	mu       sync.Mutex
	services map[model.ServiceKey]*hcService
}

type hcService struct {
	port      int32
	servers   []*Server
	endpoints int
}

// NewServiceHealth returns a manager that listens on each of addrs (host parts, as ListenHosts gives
// them): nil means all addresses, an empty list none. Servers that cannot bind retry every
// RetryInterval by clk.
func NewServiceHealth(clk clock.Clock, l Listener, proxy *ProxyHealth, addrs []string) *ServiceHealth {
	if addrs == nil {
		addrs = []string{""}
	}
	return &ServiceHealth{clock: clk, listener: l, proxy: proxy, addrs: addrs, services: map[model.ServiceKey]*hcService{}}
}

// ListenHosts is where healthCheckNodePort servers listen, as kube-proxy decides it from
// --nodeport-addresses: on every node address inside one of the IPv4 CIDRs, or on all addresses
// (nil) when there are no IPv4 CIDRs or one of them is 0.0.0.0/0. When no node address matches, the
// list is empty and no server listens, as in kube-proxy.
func ListenHosts(cidrs []netip.Prefix, nodeAddrs []netip.Addr) []string {
	var v4 []netip.Prefix
	for _, p := range cidrs {
		if p.Addr().Is4() {
			if p.Bits() == 0 {
				return nil
			}
			v4 = append(v4, p)
		}
	}
	if len(v4) == 0 {
		return nil
	}
	hosts := []string{}
	seen := map[netip.Addr]bool{}
	for _, a := range nodeAddrs {
		a = a.Unmap()
		for _, p := range v4 {
			if p.Contains(a) && !seen[a] {
				seen[a] = true
				hosts = append(hosts, a.String())
			}
		}
	}
	sort.Strings(hosts)
	return hosts
}

// Sync makes the running servers match snap: a server per service with a healthCheckNodePort, each
// reporting the number of this node's ready endpoints. A port that cannot be opened is reported
// and retried every RetryInterval until it opens or its service goes; it never affects other
// services.
func (s *ServiceHealth) Sync(snap *model.Snapshot) error {
	want := map[model.ServiceKey]int32{}
	local := map[model.ServiceKey]map[string]struct{}{}
	for name, svc := range snap.Services {
		if svc.HealthCheckNodePort == 0 {
			continue
		}
		want[name.ServiceKey] = svc.HealthCheckNodePort
		ips := local[name.ServiceKey]
		if ips == nil {
			ips = map[string]struct{}{}
			local[name.ServiceKey] = ips
		}
		for _, ep := range snap.Endpoints[name] {
			if ep.Ready && ep.NodeName == snap.Node.Name {
				ips[ep.IP.String()] = struct{}{}
			}
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for key, hc := range s.services {
		if port, ok := want[key]; !ok || port != hc.port {
			hc.close()
			delete(s.services, key)
		}
	}
	for key, port := range want {
		hc, ok := s.services[key]
		if !ok {
			var err error
			if hc, err = s.open(key, port); err != nil {
				errs = append(errs, err)
			}
			s.services[key] = hc
		}
		hc.endpoints = len(local[key])
	}
	return errors.Join(errs...)
}

// open starts the service's servers. Those that cannot bind yet keep retrying; the error says which.
func (s *ServiceHealth) open(key model.ServiceKey, port int32) (*hcService, error) {
	hc := &hcService{port: port}
	var errs []error
	for _, host := range s.addrs {
		addr := net.JoinHostPort(host, strconv.Itoa(int(port)))
		srv, err := StartServer(s.clock, s.listener, addr, s.handler(key), "service", key, "port", port)
		if err != nil {
			errs = append(errs, fmt.Errorf("health check for %s: %w", key, err))
		}
		hc.servers = append(hc.servers, srv)
	}
	return hc, errors.Join(errs...)
}

func (hc *hcService) close() {
	for _, srv := range hc.servers {
		srv.Close()
	}
}

// Close stops every server.
func (s *ServiceHealth) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for key, hc := range s.services {
		hc.close()
		delete(s.services, key)
	}
}

type serviceHealthBody struct {
	Service struct {
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"service"`
	LocalEndpoints      int  `json:"localEndpoints"`
	ServiceProxyHealthy bool `json:"serviceProxyHealthy"`
}

func (s *ServiceHealth) handler(key model.ServiceKey) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		hc, ok := s.services[key]
		count := 0
		if ok {
			count = hc.endpoints
		}
		s.mu.Unlock()
		var body serviceHealthBody
		body.Service.Namespace, body.Service.Name = key.Namespace, key.Name
		body.LocalEndpoints = count
		body.ServiceProxyHealthy = s.proxy.IsHealthy()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		// Cloud load balancers that weigh nodes read this header (kube-proxy sends it too).
		w.Header().Set("X-Load-Balancing-Endpoint-Weight", strconv.Itoa(count))
		if count > 0 && body.ServiceProxyHealthy {
			w.WriteHeader(http.StatusOK)
		} else {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(body)
	})
}
