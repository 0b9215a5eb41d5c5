// Package healthcheck serves kube-proxy's two kinds of health endpoint with kube-proxy's semantics,
// so load balancers, probes and dashboards configured for kube-proxy keep working:
//   - the proxy's own /healthz and /livez on --healthz-bind-address (default 0.0.0.0:10256);
//   - one HTTP server per eTP=Local load-balancer service on its healthCheckNodePort, telling cloud load
//     balancers whether this node has a local endpoint.
package healthcheck

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/switchyard/switchyard/proxier/metrics"
)

// ToBeDeletedTaint is the taint the cluster autoscaler sets before removing a node; like kube-proxy,
// /healthz then fails so that load balancers drain the node before it goes.
const ToBeDeletedTaint = "ToBeDeletedByClusterAutoscaler"

// ProxyHealth tracks whether queued changes reach the kernel in time. It is healthy while starting
// up, and afterwards while no queued change is older than the timeout (kube-proxy uses twice the
// sync period). Safe for concurrent use.
type ProxyHealth struct {
	clock   clock.PassiveClock
	timeout time.Duration

	mu            sync.Mutex
	lastUpdated   time.Time
	oldestPending time.Time
	nodeEligible  bool
	// extra are conditions besides the proxy rules, e.g. "waiting for this node's podCIDR".
	extra map[string]string
}

// NewProxyHealth returns a tracker with the given timeout.
func NewProxyHealth(c clock.PassiveClock, timeout time.Duration) *ProxyHealth {
	return &ProxyHealth{clock: c, timeout: timeout, nodeEligible: true, extra: map[string]string{}}
}

// QueuedUpdate records that a change is waiting to be programmed. Only the oldest one counts.
func (h *ProxyHealth) QueuedUpdate() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.oldestPending.IsZero() {
		h.oldestPending = h.clock.Now()
	}
}

// Updated records a successful sync: everything queued before it is now programmed.
func (h *ProxyHealth) Updated() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.oldestPending = time.Time{}
	h.lastUpdated = h.clock.Now()
}

// SetNodeEligible records whether this node should receive load-balancer traffic: false once the Node
// is being deleted or carries ToBeDeletedTaint.
func (h *ProxyHealth) SetNodeEligible(eligible bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.nodeEligible = eligible
}

// SetCondition marks a named condition unhealthy with a reason, or clears it when reason is "".
// /healthz and /livez report unhealthy while any condition is set, and say why.
func (h *ProxyHealth) SetCondition(name, reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if reason == "" {
		delete(h.extra, name)
	} else {
		h.extra[name] = reason
	}
}

// Status is one reading of the tracker.
type Status struct {
	Healthy      bool
	NodeEligible bool
	LastUpdated  time.Time
	CurrentTime  time.Time
	Reasons      []string
}

// Status reads the tracker.
func (h *ProxyHealth) Status() Status {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.clock.Now()
	s := Status{NodeEligible: h.nodeEligible, LastUpdated: h.lastUpdated, CurrentTime: now}
	s.Healthy = h.oldestPending.IsZero() || now.Sub(h.oldestPending) < h.timeout
	if !s.Healthy {
		s.Reasons = append(s.Reasons, fmt.Sprintf("changes queued since %s not yet programmed", h.oldestPending.Format(time.RFC3339)))
	}
	for name, reason := range h.extra {
		s.Healthy = false
		s.Reasons = append(s.Reasons, name+": "+reason)
	}
	return s
}

// IsHealthy reports the proxy's health, ignoring node eligibility (what /livez and the service health
// servers use).
func (h *ProxyHealth) IsHealthy() bool { return h.Status().Healthy }

// Handler serves /healthz and /livez. /healthz also fails when the node is not eligible; /livez
// does not, so a node being drained is not restarted.
func (h *ProxyHealth) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { h.serve(w, true) })
	mux.HandleFunc("/livez", func(w http.ResponseWriter, _ *http.Request) { h.serve(w, false) })
	return mux
}

func (h *ProxyHealth) serve(w http.ResponseWriter, withNode bool) {
	s := h.Status()
	healthy := s.Healthy
	if withNode {
		healthy = healthy && s.NodeEligible
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	code := http.StatusOK
	if !healthy {
		code = http.StatusServiceUnavailable
	}
	counter := metrics.ProxyLivezTotal
	if withNode {
		counter = metrics.ProxyHealthzTotal
	}
	counter.WithLabelValues(fmt.Sprint(code)).Inc()
	w.WriteHeader(code)
	lastUpdated := s.LastUpdated
	if healthy {
		// kube-proxy reports "now" as lastUpdated while healthy, because older releases meant "the
		// loop ran recently" by it; clients that compare the two fields rely on that.
		lastUpdated = s.CurrentTime
	}
	// Round(0) drops the monotonic clock reading that time.Time's String would otherwise print.
	body := fmt.Sprintf(`{"lastUpdated": %q,"currentTime": %q`, lastUpdated.Round(0), s.CurrentTime.Round(0))
	if withNode {
		body += fmt.Sprintf(`, "nodeEligible": %v`, s.NodeEligible)
	}
	if len(s.Reasons) > 0 {
		reasons, _ := json.Marshal(s.Reasons)
		body += `, "reasons": ` + string(reasons)
	}
	fmt.Fprint(w, body+"}")
}

// Serve listens on addr and serves Handler until the listener fails. An empty addr disables it.
func (h *ProxyHealth) Serve(addr string) error {
	if addr == "" {
		return nil
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("healthz server on %s: %w", addr, err)
	}
	klog.InfoS("Serving health checks", "address", addr)
	return (&http.Server{Handler: h.Handler(), ReadHeaderTimeout: 10 * time.Second}).Serve(l)
}
