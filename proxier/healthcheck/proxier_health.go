// Package healthcheck serves kube-proxy's two kinds of health endpoint with kube-proxy's semantics,
// so load balancers, probes and dashboards configured for kube-proxy keep working:
//   - the proxy's own /healthz and /livez on --healthz-bind-address (default 0.0.0.0:10256);
//   - one HTTP server per eTP=Local load-balancer service on its healthCheckNodePort, telling cloud load
//     balancers whether this node has a local endpoint.
package healthcheck

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"

	"github.com/switchyard/switchyard/proxier/metrics"
	"github.com/switchyard/switchyard/proxier/model"
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
	// families are the IP families the sync loop programs; each is reported in the body's "status".
	families []model.IPFamily

	mu            sync.Mutex
	lastUpdated   time.Time
	oldestPending time.Time
	// nodeEligible is false until this node's Node object has been seen, as in kube-proxy.
	nodeEligible bool
	// extra are conditions besides the proxy rules, e.g. "waiting for this node's podCIDR".
	extra map[string]string
}

// NewProxyHealth returns a tracker with the given timeout for a sync loop that programs families
// (IPv4 when none are given).
func NewProxyHealth(c clock.PassiveClock, timeout time.Duration, families ...model.IPFamily) *ProxyHealth {
	if len(families) == 0 {
		families = []model.IPFamily{model.IPv4}
	}
	return &ProxyHealth{clock: c, timeout: timeout, families: families, extra: map[string]string{}}
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

// SetNodeEligible records whether this node should receive load-balancer traffic. As in kube-proxy
// v1.37, it is not until its Node object has been seen, nor while the Node is being deleted or
// carries ToBeDeletedTaint; NodeEligible decides.
func (h *ProxyHealth) SetNodeEligible(eligible bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.nodeEligible = eligible
}

// NodeEligible is kube-proxy v1.37's rule: a node gets load-balancer traffic once its Node object
// has been seen (node non-nil), unless its deletion has begun or the cluster autoscaler has tainted
// it ToBeDeletedByClusterAutoscaler (with any effect).
func NodeEligible(node *v1.Node) bool {
	if node == nil || !node.DeletionTimestamp.IsZero() {
		return false
	}
	for _, t := range node.Spec.Taints {
		if t.Key == ToBeDeletedTaint {
			return false
		}
	}
	return true
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
	// Healthy is false while a queued change is late or a condition is set.
	Healthy bool
	// RulesHealthy is false only while a queued change is late: kube-proxy's own notion.
	RulesHealthy bool
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
	s.RulesHealthy = h.oldestPending.IsZero() || now.Sub(h.oldestPending) < h.timeout
	if !s.RulesHealthy {
		s.Reasons = append(s.Reasons, fmt.Sprintf("changes queued since %s not yet programmed", h.oldestPending.Format(time.RFC3339)))
	}
	for name, reason := range h.extra {
		s.Reasons = append(s.Reasons, name+": "+reason)
	}
	sort.Strings(s.Reasons)
	s.Healthy = s.RulesHealthy && len(h.extra) == 0
	return s
}

// IsHealthy reports the proxy's health, ignoring node eligibility (what /livez and the service health
// servers use).
func (h *ProxyHealth) IsHealthy() bool { return h.Status().Healthy }

// proxyHealthBody is kube-proxy v1.37's /healthz and /livez body, field for field, plus "reasons":
// Switchyard's words for why it is unhealthy, which clients parsing kube-proxy's body ignore.
type proxyHealthBody struct {
	// LastUpdated is the last successful sync, or now while healthy (see serve).
	LastUpdated time.Time `json:"lastUpdated"`
	CurrentTime time.Time `json:"currentTime"`
	// NodeEligible is in /healthz's body only.
	NodeEligible *bool `json:"nodeEligible,omitempty"`
	// Healthy is the proxy's health without node eligibility; the status code has both.
	Healthy bool `json:"healthy"`
	// Status is per IP family, for the families synced at least once.
	Status  map[string]familyHealth `json:"status,omitempty"`
	Reasons []string                `json:"reasons,omitempty"`
}

type familyHealth struct {
	LastUpdated time.Time `json:"lastUpdated"`
	Healthy     bool      `json:"healthy"`
}

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
	body := proxyHealthBody{LastUpdated: s.LastUpdated, CurrentTime: s.CurrentTime, Healthy: s.Healthy, Reasons: s.Reasons}
	if !s.LastUpdated.IsZero() {
		// One sync loop programs every family, so they share its last sync and its health.
		body.Status = map[string]familyHealth{}
		for _, f := range h.families {
			body.Status[f.String()] = familyHealth{LastUpdated: s.LastUpdated, Healthy: s.RulesHealthy}
		}
	}
	if withNode {
		body.NodeEligible = &s.NodeEligible
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
	if healthy {
		// kube-proxy reports "now" as lastUpdated while healthy, because older releases meant "the
		// loop ran recently" by it; clients that compare the two fields rely on that.
		body.LastUpdated = s.CurrentTime
	}
	out, err := json.Marshal(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(code)
	_, _ = w.Write(out)
}
