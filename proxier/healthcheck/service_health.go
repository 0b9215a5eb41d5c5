package healthcheck

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"k8s.io/klog/v2"

	"github.com/switchyard/switchyard/proxier/model"
)

// Listener opens a TCP listener; tests substitute one that hands out loopback ports.
type Listener interface {
	Listen(addr string) (net.Listener, error)
}

// NetListener is the real Listener.
type NetListener struct{}

func (NetListener) Listen(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }

// ServiceHealth runs one HTTP server per service that has a healthCheckNodePort. Each answers 200 when
// this node has a ready local endpoint for the service and the proxy is healthy, and 503 otherwise, with
// kube-proxy's JSON body, so cloud load balancers send eTP=Local traffic only to nodes that can serve
// it. Safe for concurrent use.
type ServiceHealth struct {
	listener Listener
	proxy    *ProxyHealth
	// addrs are the host parts to listen on, one server per address; [""] means all addresses.
	addrs []string

	mu       sync.Mutex
	services map[model.ServiceKey]*hcService
}

type hcService struct {
	port      int32
	servers   []*http.Server
	endpoints int
}

// NewServiceHealth returns a manager that listens on each of addrs (host parts; nil means all).
func NewServiceHealth(l Listener, proxy *ProxyHealth, addrs []string) *ServiceHealth {
	if len(addrs) == 0 {
		addrs = []string{""}
	}
	return &ServiceHealth{listener: l, proxy: proxy, addrs: addrs, services: map[model.ServiceKey]*hcService{}}
}

// Sync makes the running servers match snap: a server per service with a healthCheckNodePort, each
// reporting the number of this node's ready endpoints. A port that cannot be opened is logged and
// retried on the next sync; it never affects other services.
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
				klog.ErrorS(err, "Cannot serve health check node port", "service", key, "port", port)
				errs = append(errs, err)
				continue
			}
			s.services[key] = hc
		}
		hc.endpoints = len(local[key])
	}
	return errors.Join(errs...)
}

func (s *ServiceHealth) open(key model.ServiceKey, port int32) (*hcService, error) {
	hc := &hcService{port: port}
	for _, host := range s.addrs {
		addr := net.JoinHostPort(host, strconv.Itoa(int(port)))
		l, err := s.listener.Listen(addr)
		if err != nil {
			hc.close()
			return nil, fmt.Errorf("health check for %s on %s: %w", key, addr, err)
		}
		srv := &http.Server{Handler: s.handler(key), ReadHeaderTimeout: 10 * time.Second}
		hc.servers = append(hc.servers, srv)
		go func() {
			if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				klog.ErrorS(err, "Health check server stopped", "service", key, "address", addr)
			}
		}()
		klog.V(2).InfoS("Serving service health check", "service", key, "address", addr)
	}
	return hc, nil
}

func (hc *hcService) close() {
	for _, srv := range hc.servers {
		_ = srv.Close()
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
