package watcher

import (
	"reflect"
	"testing"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"

	"github.com/switchyard/switchyard/proxier/model"
)

func TestConvertEndpointConditions(t *testing.T) {
	cases := []struct {
		name                        string
		cond                        discovery.EndpointConditions
		ready, serving, terminating bool
	}{
		{"all unset", discovery.EndpointConditions{}, true, true, false},
		{"not ready, serving unset means serving", discovery.EndpointConditions{Ready: ptr(false)}, false, true, false},
		{"terminating, serving unset is serving-terminating", discovery.EndpointConditions{Ready: ptr(false), Terminating: ptr(true)}, false, true, true},
		{"serving and terminating", discovery.EndpointConditions{Ready: ptr(false), Serving: ptr(true), Terminating: ptr(true)}, false, true, true},
		{"terminating, not serving", discovery.EndpointConditions{Ready: ptr(false), Serving: ptr(false), Terminating: ptr(true)}, false, false, true},
		{"ready set explicitly", discovery.EndpointConditions{Ready: ptr(true), Serving: ptr(true), Terminating: ptr(false)}, true, true, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			es := slice("ns", "web-1", "web", []discovery.Endpoint{{Addresses: []string{"10.244.1.5"}, Conditions: tc.cond}})
			_, info, rejects, ok := convertEndpointSlice(es)
			if !ok || len(rejects) != 0 || len(info.Endpoints) != 1 {
				t.Fatalf("ok=%v rejects=%v info=%+v", ok, rejects, info)
			}
			e := info.Endpoints[0]
			if e.Ready != tc.ready || e.Serving != tc.serving || e.Terminating != tc.terminating {
				t.Errorf("got ready=%v serving=%v terminating=%v, want %v %v %v",
					e.Ready, e.Serving, e.Terminating, tc.ready, tc.serving, tc.terminating)
			}
		})
	}
}

func TestConvertEndpointSliceFields(t *testing.T) {
	es := slice("ns", "web-1", "web", []discovery.Endpoint{{
		Addresses: []string{"10.244.1.5", "10.244.1.6"},
		NodeName:  ptr("node-a"),
		Zone:      ptr("zone-a"),
		Hints: &discovery.EndpointHints{
			ForZones: []discovery.ForZone{{Name: "zone-b"}, {Name: "zone-a"}, {Name: "zone-b"}},
			ForNodes: []discovery.ForNode{{Name: "node-c"}, {Name: "node-a"}, {Name: "node-c"}},
		},
	}}, func(es *discovery.EndpointSlice) {
		es.Ports = append(es.Ports, discovery.EndpointPort{Port: ptr(int32(9090))}) // unnamed, protocol unset
	})
	svcKey, info, rejects, ok := convertEndpointSlice(es)
	if !ok || len(rejects) != 0 {
		t.Fatalf("ok=%v rejects=%v", ok, rejects)
	}
	if svcKey != (model.ServiceKey{Namespace: "ns", Name: "web"}) {
		t.Errorf("service key %v", svcKey)
	}
	wantPorts := []slicePort{{portKey{"http", model.TCP}, 8080}, {portKey{"", model.TCP}, 9090}}
	if !reflect.DeepEqual(info.Ports, wantPorts) {
		t.Errorf("ports %+v, want %+v", info.Ports, wantPorts)
	}
	want := model.Endpoint{IP: addr(t, "10.244.1.5"), Ready: true, Serving: true, NodeName: "node-a", Zone: "zone-a",
		ZoneHints: []string{"zone-a", "zone-b"}, NodeHints: []string{"node-a", "node-c"}}
	if len(info.Endpoints) != 1 || !reflect.DeepEqual(info.Endpoints[0], want) {
		t.Errorf("endpoints %+v, want [%+v]", info.Endpoints, want)
	}
}

func TestConvertEndpointSliceUnusable(t *testing.T) {
	fqdn := slice("ns", "web-1", "web", []discovery.Endpoint{{Addresses: []string{"example.com"}}},
		func(es *discovery.EndpointSlice) { es.AddressType = discovery.AddressTypeFQDN })
	headless := slice("ns", "web-1", "web", []discovery.Endpoint{ep("10.244.1.5", "node-a")},
		func(es *discovery.EndpointSlice) { es.Labels[v1.IsHeadlessService] = "" })
	other := slice("ns", "web-1", "web", []discovery.Endpoint{ep("10.244.1.5", "node-a")},
		func(es *discovery.EndpointSlice) { es.Labels[LabelServiceProxyName] = "other" })
	for name, es := range map[string]*discovery.EndpointSlice{"FQDN": fqdn, "headless": headless, "another proxy's": other} {
		_, _, rejects, ok := convertEndpointSlice(es)
		if ok || len(rejects) != 0 {
			t.Errorf("%s: ok=%v rejects=%v, want unusable without rejections", name, ok, rejects)
		}
	}

	before := invalidCount(t, kindEndpointSlice, reasonNoServiceName)
	orphan := slice("ns", "orphan", "", []discovery.Endpoint{ep("10.244.1.5", "node-a")})
	_, _, rejects, ok := convertEndpointSlice(orphan)
	report(rejects)
	if ok || len(rejects) != 1 || rejects[0].Reason != reasonNoServiceName {
		t.Errorf("slice without service label: ok=%v rejects=%v", ok, rejects)
	}
	if got := invalidCount(t, kindEndpointSlice, reasonNoServiceName) - before; got != 1 {
		t.Errorf("metric rose by %v, want 1", got)
	}
}

// TestConvertEndpointSliceRejects checks that a bad endpoint or port is refused alone, with its
// metric, and everything else in the slice is kept.
func TestConvertEndpointSliceRejects(t *testing.T) {
	good := ep("10.244.1.5", "node-a")
	cases := []struct {
		name      string
		eps       []discovery.Endpoint
		mutate    func(*discovery.EndpointSlice)
		reason    string
		wantEps   int
		wantPorts int
	}{
		{"unparseable address", []discovery.Endpoint{good, ep("10.244.1.300", "node-a")}, nil, reasonInvalidIP, 1, 1},
		{"IPv6 address in an IPv4 slice", []discovery.Endpoint{good, ep("fd00:10:244::5", "node-a")}, nil, reasonWrongFamily, 1, 1},
		{"IPv4 address in an IPv6 slice", []discovery.Endpoint{ep("fd00:10:244::5", "node-a"), good},
			func(es *discovery.EndpointSlice) { es.AddressType = discovery.AddressTypeIPv6 }, reasonWrongFamily, 1, 1},
		{"no addresses", []discovery.Endpoint{good, {NodeName: ptr("node-a")}}, nil, reasonNoAddress, 1, 1},
		{"port without a number", []discovery.Endpoint{good}, func(es *discovery.EndpointSlice) {
			es.Ports = append(es.Ports, discovery.EndpointPort{Name: ptr("all")})
		}, reasonMissingPort, 1, 1},
		{"port zero", []discovery.Endpoint{good}, func(es *discovery.EndpointSlice) {
			es.Ports = append(es.Ports, discovery.EndpointPort{Name: ptr("zero"), Port: ptr(int32(0))})
		}, reasonPortRange, 1, 1},
		{"port over 65535", []discovery.Endpoint{good}, func(es *discovery.EndpointSlice) {
			es.Ports = append(es.Ports, discovery.EndpointPort{Name: ptr("big"), Port: ptr(int32(65536))})
		}, reasonPortRange, 1, 1},
		{"unknown protocol", []discovery.Endpoint{good}, func(es *discovery.EndpointSlice) {
			es.Ports = append(es.Ports, discovery.EndpointPort{Name: ptr("icmp"), Protocol: ptr(v1.Protocol("ICMP")), Port: ptr(int32(1))})
		}, reasonProtocol, 1, 1},
		{"duplicate port", []discovery.Endpoint{good}, func(es *discovery.EndpointSlice) {
			es.Ports = append(es.Ports, discovery.EndpointPort{Name: ptr("http"), Protocol: ptr(v1.ProtocolTCP), Port: ptr(int32(8081))})
		}, reasonDuplicatePort, 1, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var mutate []func(*discovery.EndpointSlice)
			if tc.mutate != nil {
				mutate = append(mutate, tc.mutate)
			}
			es := slice("ns", "web-1", "web", tc.eps, mutate...)
			before := invalidCount(t, kindEndpointSlice, tc.reason)
			_, info, rejects, ok := convertEndpointSlice(es)
			report(rejects)
			if !ok {
				t.Fatal("slice refused as a whole")
			}
			if len(rejects) != 1 || rejects[0].Reason != tc.reason || rejects[0].Object != "ns/web-1" {
				t.Errorf("rejections %v, want one with reason %s", rejects, tc.reason)
			}
			if len(info.Endpoints) != tc.wantEps || len(info.Ports) != tc.wantPorts {
				t.Errorf("kept %d endpoints and %d ports, want %d and %d", len(info.Endpoints), len(info.Ports), tc.wantEps, tc.wantPorts)
			}
			if got := invalidCount(t, kindEndpointSlice, tc.reason) - before; got != 1 {
				t.Errorf("metric rose by %v, want 1", got)
			}
		})
	}
}

func TestMergeEndpoints(t *testing.T) {
	a := &sliceInfo{
		Ports: []slicePort{{portKey{"http", model.TCP}, 8080}, {portKey{"dns", model.UDP}, 53}},
		Endpoints: []model.Endpoint{
			{IP: addr(t, "10.244.2.9"), Ready: true, NodeName: "node-b"},
			{IP: addr(t, "10.244.1.5"), Ready: true, NodeName: "node-b"},
		},
	}
	b := &sliceInfo{
		Ports: []slicePort{{portKey{"http", model.TCP}, 8080}},
		Endpoints: []model.Endpoint{
			// Same IP:port as in slice a but claimed by this node: the local view wins.
			{IP: addr(t, "10.244.1.5"), Ready: true, NodeName: "node-a"},
			{IP: addr(t, "10.244.1.7"), Ready: false, NodeName: "node-a"},
		},
	}
	got := mergeEndpoints(map[string]*sliceInfo{"web-a": a, "web-b": b}, "node-a")
	want := map[portKey][]model.Endpoint{
		{"http", model.TCP}: {
			{IP: addr(t, "10.244.1.5"), Port: 8080, Ready: true, NodeName: "node-a"},
			{IP: addr(t, "10.244.1.7"), Port: 8080, NodeName: "node-a"},
			{IP: addr(t, "10.244.2.9"), Port: 8080, Ready: true, NodeName: "node-b"},
		},
		{"dns", model.UDP}: {
			{IP: addr(t, "10.244.1.5"), Port: 53, Ready: true, NodeName: "node-b"},
			{IP: addr(t, "10.244.2.9"), Port: 53, Ready: true, NodeName: "node-b"},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	// Merging must not have written into the slices' own endpoints.
	if a.Endpoints[0].Port != 0 || b.Endpoints[0].Port != 0 {
		t.Error("mergeEndpoints mutated its input")
	}
	if mergeEndpoints(nil, "node-a") != nil {
		t.Error("no slices should merge to nil")
	}
}

// TestConvertEndpointHints: both kinds of hint reach the model as sorted, duplicate-free names, and
// an absent or empty list stays nil (model.Categorize reads "no hints" from its length).
func TestConvertEndpointHints(t *testing.T) {
	cases := []struct {
		name            string
		hints           *discovery.EndpointHints
		zones, nodeList []string
	}{
		{name: "no hints"},
		{name: "empty hints", hints: &discovery.EndpointHints{}},
		{name: "empty lists", hints: &discovery.EndpointHints{ForZones: []discovery.ForZone{}, ForNodes: []discovery.ForNode{}}},
		{name: "zone hints only", hints: &discovery.EndpointHints{ForZones: []discovery.ForZone{{Name: "zone-a"}}},
			zones: []string{"zone-a"}},
		{name: "node hints only", hints: &discovery.EndpointHints{ForNodes: []discovery.ForNode{{Name: "node-b"}, {Name: "node-a"}}},
			nodeList: []string{"node-a", "node-b"}},
		{name: "both, as the controller writes them for PreferSameNode",
			hints: &discovery.EndpointHints{ForZones: []discovery.ForZone{{Name: "zone-a"}}, ForNodes: []discovery.ForNode{{Name: "node-a"}}},
			zones: []string{"zone-a"}, nodeList: []string{"node-a"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := ep("10.244.1.5", "node-a")
			e.Hints = tc.hints
			_, info, rejects, ok := convertEndpointSlice(slice("ns", "web-1", "web", []discovery.Endpoint{e}))
			if !ok || len(rejects) != 0 || len(info.Endpoints) != 1 {
				t.Fatalf("ok=%v rejects=%v endpoints=%v", ok, rejects, info)
			}
			got := info.Endpoints[0]
			if !reflect.DeepEqual(got.ZoneHints, tc.zones) || !reflect.DeepEqual(got.NodeHints, tc.nodeList) {
				t.Errorf("zone hints %#v, node hints %#v; want %#v, %#v", got.ZoneHints, got.NodeHints, tc.zones, tc.nodeList)
			}
		})
	}
}
