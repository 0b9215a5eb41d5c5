package model

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"testing"
	"time"
)

func aps(ss ...string) []netip.AddrPort {
	out := []netip.AddrPort{}
	for _, s := range ss {
		out = append(out, netip.MustParseAddrPort(s))
	}
	return out
}

// TestNewDebugModel: the view holds every service port sorted by name, its endpoints sorted with
// their conditions and locality, and Categorize's sets per policy: nil where no traffic uses the
// policy, empty where it does and nothing is left.
func TestNewDebugModel(t *testing.T) {
	snap := NewSnapshot()
	snap.Node = NodeInfo{Name: "node-a", Labels: map[string]string{ZoneLabel: "zone-a"},
		PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24")}}
	web := clusterIPSvc(nodePort, eTPLocal)
	db := clusterIPSvc(func(s *ServicePort) {
		s.Name.Name, s.Name.Port, s.Port = "db", "", 5432
		s.ClusterIPs = []netip.Addr{netip.MustParseAddr("10.96.0.20")}
	})
	snap.Services[web.Name] = web
	snap.Services[db.Name] = db
	// web: ready endpoints on node-b and node-c only, so eTP=Local has none on this node.
	snap.Endpoints[web.Name] = []Endpoint{mkEP("10.244.3.5", "node-c"), mkEP("10.244.2.5", "node-b"), mkEP("10.244.1.9", "node-a", notReady)}
	// db: no endpoints at all.

	syncs := []DebugSync{{Family: IPv6, LastError: "boom"}, {Family: IPv4, LastSuccess: time.Unix(100, 0)}}
	got := NewDebugModel(snap, syncs)

	if got.Node.Name != "node-a" || got.Node.Zone != "zone-a" || len(got.Node.PodCIDRs) != 1 {
		t.Errorf("node = %+v", got.Node)
	}
	if len(got.Services) != 2 || got.Services[0].String() != "ns/db" || got.Services[1].String() != "ns/web:http" {
		t.Fatalf("services = %+v, want ns/db then ns/web:http", got.Services)
	}
	dbv, webv := got.Services[0], got.Services[1]
	if dbv.HasAny || dbv.ClusterEndpoints == nil || len(dbv.ClusterEndpoints) != 0 || dbv.LocalEndpoints != nil {
		t.Errorf("db: hasAny %v cluster %#v local %#v; want false, empty (not nil), nil", dbv.HasAny, dbv.ClusterEndpoints, dbv.LocalEndpoints)
	}
	if !reflect.DeepEqual(webv.ClusterEndpoints, aps("10.244.2.5:8080", "10.244.3.5:8080")) {
		t.Errorf("web cluster endpoints = %v", webv.ClusterEndpoints)
	}
	if webv.LocalEndpoints == nil || len(webv.LocalEndpoints) != 0 || !webv.HasAny {
		t.Errorf("web local endpoints = %#v (hasAny %v), want empty: no ready local endpoint", webv.LocalEndpoints, webv.HasAny)
	}
	wantEPs := []DebugEndpoint{
		{Endpoint: netip.MustParseAddrPort("10.244.1.9:8080"), Local: true, NodeName: "node-a"},
		{Endpoint: netip.MustParseAddrPort("10.244.2.5:8080"), Ready: true, Serving: true, NodeName: "node-b"},
		{Endpoint: netip.MustParseAddrPort("10.244.3.5:8080"), Ready: true, Serving: true, NodeName: "node-c"},
	}
	if !reflect.DeepEqual(webv.Endpoints, wantEPs) {
		t.Errorf("web endpoints =\n%+v\nwant\n%+v", webv.Endpoints, wantEPs)
	}
	if webv.NodePort != 30080 || webv.ExternalTrafficPolicy != PolicyLocal || webv.ServicePort != 80 || webv.Protocol != TCP {
		t.Errorf("web = %+v", webv)
	}
	if len(got.Syncs) != 2 || got.Syncs[0].IPFamily != "IPv4" || got.Syncs[1].IPFamily != "IPv6" || got.Syncs[1].LastError != "boom" {
		t.Errorf("syncs = %+v, want IPv4 then IPv6 with their facts", got.Syncs)
	}
	if syncs[0].IPFamily != "" {
		t.Errorf("NewDebugModel wrote into the caller's syncs")
	}

	// The view survives its JSON round trip, and a reader finds a backend's facts by family.
	b, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	var back DebugModel
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if s, ok := back.Sync(IPv4); !ok || !s.LastSuccess.Equal(time.Unix(100, 0)) {
		t.Errorf("Sync(IPv4) after JSON = %+v, %v", s, ok)
	}
	if !reflect.DeepEqual(back.Services, got.Services) {
		t.Errorf("services differ after a JSON round trip:\n%+v\n%+v", back.Services, got.Services)
	}
	if b2, _ := json.Marshal(NewDebugModel(snap, syncs)); string(b2) != string(b) {
		t.Errorf("two views of one snapshot differ")
	}
}

// TestNewDebugModelWithoutSnapshot: before the first sync the view is empty, not null.
func TestNewDebugModelWithoutSnapshot(t *testing.T) {
	b, err := json.Marshal(NewDebugModel(nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"node":{"name":""},"services":[],"syncs":[]}`; string(b) != want {
		t.Errorf("got %s, want %s", b, want)
	}
}
