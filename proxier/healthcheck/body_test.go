package healthcheck

import (
	"encoding/json"
	"net/http/httptest"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
)

// kubeProxyBody is kube-proxy v1.37's ProxyHealth as its clients decode it
// (pkg/proxy/healthcheck/proxy_health.go).
type kubeProxyBody struct {
	LastUpdated  time.Time `json:"lastUpdated"`
	CurrentTime  time.Time `json:"currentTime"`
	NodeEligible *bool     `json:"nodeEligible,omitempty"`
	Healthy      bool      `json:"healthy"`
	Status       map[string]struct {
		LastUpdated time.Time `json:"lastUpdated"`
		Healthy     bool      `json:"healthy"`
	} `json:"status,omitempty"`
}

func decode(t *testing.T, h *ProxyHealth, path string) (int, kubeProxyBody, map[string]any) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.Handler().ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	var typed kubeProxyBody
	var raw map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &typed); err != nil {
		t.Fatalf("%s: %q does not decode as kube-proxy's body: %v", path, rec.Body.String(), err)
	}
	_ = json.Unmarshal(rec.Body.Bytes(), &raw)
	return rec.Code, typed, raw
}

func TestBodyIsKubeProxys(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 20, 0, 0, 0, time.UTC)
	clk := clocktesting.NewFakeClock(t0)
	h := NewProxyHealth(clk, time.Minute)
	h.SetNodeEligible(true)

	// Before the first sync: healthy, no per-family status yet.
	code, body, raw := decode(t, h, "/healthz")
	if code != 200 || !body.Healthy || body.NodeEligible == nil || !*body.NodeEligible || body.Status != nil {
		t.Fatalf("starting up: %d %s", code, raw)
	}
	if _, ok := raw["reasons"]; ok {
		t.Fatalf("a healthy body says no reasons: %v", raw)
	}

	clk.Step(time.Second)
	h.Updated()
	synced := clk.Now()
	clk.Step(10 * time.Second)
	code, body, raw = decode(t, h, "/healthz")
	if code != 200 || !body.CurrentTime.Equal(clk.Now()) || !body.LastUpdated.Equal(clk.Now()) {
		t.Fatalf("healthy: lastUpdated is now, as in kube-proxy: %d %v", code, raw)
	}
	if st, ok := body.Status["IPv4"]; !ok || !st.Healthy || !st.LastUpdated.Equal(synced) || len(body.Status) != 1 {
		t.Fatalf("per-family status carries the real last sync: %v", raw)
	}
	if ts, _ := raw["currentTime"].(string); ts != "2026-12-04T20:00:11Z" {
		t.Fatalf("times are RFC 3339, as encoding/json writes them: %q", ts)
	}

	// /livez has no nodeEligible.
	if _, _, raw := decode(t, h, "/livez"); raw["nodeEligible"] != nil {
		t.Fatalf("livez body: %v", raw)
	}

	// A late change: both 503; lastUpdated is the real last sync, healthy false, per family too.
	h.QueuedUpdate()
	clk.Step(time.Minute)
	for _, path := range []string{"/healthz", "/livez"} {
		code, body, raw = decode(t, h, path)
		if code != 503 || body.Healthy || !body.LastUpdated.Equal(synced) || body.Status["IPv4"].Healthy {
			t.Fatalf("%s late: %d %v", path, code, raw)
		}
	}

	// An ineligible node: 503 on /healthz, but "healthy" is the proxy's own health, as in kube-proxy.
	h.Updated()
	h.SetNodeEligible(false)
	code, body, raw = decode(t, h, "/healthz")
	if code != 503 || !body.Healthy || body.NodeEligible == nil || *body.NodeEligible {
		t.Fatalf("ineligible node: %d %v", code, raw)
	}
}

func TestHealthzFailsUntilTheNodeIsSeen(t *testing.T) {
	h := NewProxyHealth(clocktesting.NewFakeClock(time.Now()), time.Minute)
	if code, body, raw := decode(t, h, "/healthz"); code != 503 || body.NodeEligible == nil || *body.NodeEligible {
		t.Fatalf("kube-proxy v1.37 is not eligible before its Node is known: %d %v", code, raw)
	}
	if code, _, _ := decode(t, h, "/livez"); code != 200 {
		t.Fatalf("livez ignores the node: %d", code)
	}
}

func TestNodeEligible(t *testing.T) {
	now := metav1.Now()
	for _, tc := range []struct {
		name string
		node *v1.Node
		want bool
	}{
		{"not seen yet", nil, false},
		{"plain", &v1.Node{}, true},
		{"being deleted", &v1.Node{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &now}}, false},
		{"autoscaler taint", &v1.Node{Spec: v1.NodeSpec{Taints: []v1.Taint{{Key: ToBeDeletedTaint, Effect: v1.TaintEffectNoSchedule}}}}, false},
		{"autoscaler taint, any effect", &v1.Node{Spec: v1.NodeSpec{Taints: []v1.Taint{{Key: ToBeDeletedTaint, Effect: v1.TaintEffectPreferNoSchedule}}}}, false},
		{"other taint", &v1.Node{Spec: v1.NodeSpec{Taints: []v1.Taint{{Key: "node.kubernetes.io/unschedulable", Effect: v1.TaintEffectNoSchedule}}}}, true},
	} {
		if got := NodeEligible(tc.node); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}
