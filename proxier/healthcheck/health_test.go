package healthcheck

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/switchyard/switchyard/proxier/model"
)

func get(t *testing.T, h http.Handler, path string) (int, map[string]any) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	var body map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("%s: body %q is not JSON: %v", path, rec.Body.String(), err)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q", path, ct)
	}
	return rec.Code, body
}

func TestProxyHealthFollowsQueuedUpdates(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(1_700_000_000, 0))
	h := NewProxyHealth(clk, 60*time.Second)
	h.SetNodeEligible(true) // this node's Node object has been seen
	handler := h.Handler()

	if code, _ := get(t, handler, "/healthz"); code != 200 {
		t.Fatalf("healthy while starting up: got %d", code)
	}
	h.QueuedUpdate()
	clk.Step(59 * time.Second)
	if code, _ := get(t, handler, "/healthz"); code != 200 {
		t.Fatalf("a queued update younger than the timeout: got %d", code)
	}
	h.QueuedUpdate() // a newer change must not reset the age of the oldest one
	clk.Step(2 * time.Second)
	if code, _ := get(t, handler, "/healthz"); code != 503 {
		t.Fatalf("a queued update older than the timeout: got %d", code)
	}
	if code, _ := get(t, handler, "/livez"); code != 503 {
		t.Fatalf("livez must fail too: got %d", code)
	}
	h.Updated()
	code, body := get(t, handler, "/healthz")
	if code != 200 || body["nodeEligible"] != true {
		t.Fatalf("after a sync: %d %v", code, body)
	}
}

func TestHealthzFailsOnIneligibleNodeButLivezDoesNot(t *testing.T) {
	h := NewProxyHealth(clocktesting.NewFakeClock(time.Now()), time.Minute)
	h.SetNodeEligible(false)
	code, body := get(t, h.Handler(), "/healthz")
	if code != 503 || body["nodeEligible"] != false {
		t.Fatalf("healthz on a node being deleted: %d %v", code, body)
	}
	if code, _ := get(t, h.Handler(), "/livez"); code != 200 {
		t.Fatalf("livez must not restart a draining proxy: got %d", code)
	}
}

func TestConditionsMakeUnhealthyAndSayWhy(t *testing.T) {
	h := NewProxyHealth(clocktesting.NewFakeClock(time.Now()), time.Minute)
	h.SetNodeEligible(true)
	h.SetCondition("pod-network", "waiting for podCIDR of node n1")
	code, body := get(t, h.Handler(), "/healthz")
	if code != 503 {
		t.Fatalf("got %d", code)
	}
	reasons, _ := json.Marshal(body["reasons"])
	if !strings.Contains(string(reasons), "waiting for podCIDR of node n1") {
		t.Fatalf("reasons %s", reasons)
	}
	h.SetCondition("pod-network", "")
	if code, _ := get(t, h.Handler(), "/healthz"); code != 200 {
		t.Fatalf("cleared condition: got %d", code)
	}
}

// loopbackListener opens every requested port on an ephemeral loopback port instead, and remembers
// where, so tests never bind real node ports.
type loopbackListener struct {
	mu    sync.Mutex
	addrs map[string]string
	fail  map[string]bool
}

func (l *loopbackListener) Listen(addr string) (net.Listener, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fail[addr] {
		return nil, &net.OpError{Op: "listen", Err: io.ErrClosedPipe}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err == nil {
		l.addrs[addr] = ln.Addr().String()
	}
	return ln, err
}

func (l *loopbackListener) url(addr string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return "http://" + l.addrs[addr] + "/"
}

func fetch(t *testing.T, url string) (int, serviceHealthBody, http.Header) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body serviceHealthBody
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body, resp.Header
}

func TestServiceHealthReportsLocalEndpoints(t *testing.T) {
	l := &loopbackListener{addrs: map[string]string{}, fail: map[string]bool{":30002": true}}
	proxy := NewProxyHealth(clocktesting.NewFakeClock(time.Now()), time.Minute)
	sh := NewServiceHealth(clocktesting.NewFakeClock(time.Now()), l, proxy, nil)
	defer sh.Close()

	lb := model.ServicePortName{ServiceKey: model.ServiceKey{Namespace: "ns", Name: "lb"}, Port: "http"}
	broken := model.ServicePortName{ServiceKey: model.ServiceKey{Namespace: "ns", Name: "broken"}}
	snap := model.NewSnapshot()
	snap.Node.Name = "n1"
	snap.Services[lb] = &model.ServicePort{Name: lb, HealthCheckNodePort: 30001}
	snap.Services[broken] = &model.ServicePort{Name: broken, HealthCheckNodePort: 30002}
	snap.Endpoints[lb] = []model.Endpoint{
		{IP: netip.MustParseAddr("10.244.1.2"), Port: 80, Ready: true, NodeName: "n1"},
		{IP: netip.MustParseAddr("10.244.1.3"), Port: 80, Ready: false, Serving: true, Terminating: true, NodeName: "n1"},
		{IP: netip.MustParseAddr("10.244.2.2"), Port: 80, Ready: true, NodeName: "n2"},
	}
	if err := sh.Sync(snap); err == nil {
		t.Fatal("a port that cannot be opened must be reported")
	}

	code, body, hdr := fetch(t, l.url(":30001"))
	if code != 200 || body.LocalEndpoints != 1 || !body.ServiceProxyHealthy ||
		body.Service.Namespace != "ns" || body.Service.Name != "lb" {
		t.Fatalf("one ready local endpoint: %d %+v", code, body)
	}
	if w := hdr.Get("X-Load-Balancing-Endpoint-Weight"); w != "1" {
		t.Fatalf("weight header %q", w)
	}

	// Losing the local endpoint makes the node fail the load balancer's check.
	snap2 := model.NewSnapshot()
	snap2.Node.Name = "n1"
	snap2.Services[lb] = snap.Services[lb]
	snap2.Endpoints[lb] = snap.Endpoints[lb][2:]
	if err := sh.Sync(snap2); err != nil {
		t.Fatal(err)
	}
	if code, body, _ := fetch(t, l.url(":30001")); code != 503 || body.LocalEndpoints != 0 {
		t.Fatalf("no local endpoint: %d %+v", code, body)
	}

	// Removing the service closes its server.
	url := l.url(":30001")
	if err := sh.Sync(model.NewSnapshot()); err != nil {
		t.Fatal(err)
	}
	if resp, err := http.Get(url); err == nil {
		resp.Body.Close()
		t.Fatal("server still answering after its service was removed")
	}
}
