package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/switchyard/switchyard/internal/iptables/iptablestest"
	"github.com/switchyard/switchyard/internal/polltest"
	"github.com/switchyard/switchyard/internal/syncloop"
	"github.com/switchyard/switchyard/proxier/iptables"
	"github.com/switchyard/switchyard/proxier/model"
	"github.com/switchyard/switchyard/watcher"
)

// staticSource is a model that never changes after the test sets it: one snapshot, then no
// changes.
type staticSource struct {
	mu   sync.Mutex
	snap *model.Snapshot
	fns  []func()
}

func (s *staticSource) OnChange(fn func()) { s.mu.Lock(); s.fns = append(s.fns, fn); s.mu.Unlock() }
func (s *staticSource) WaitForCacheSync(context.Context) bool {
	s.mu.Lock()
	fns := s.fns
	s.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
	return true
}
func (s *staticSource) Snapshot(full bool) (*model.Snapshot, watcher.SyncInfo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := *s.snap
	out.Full = full
	s.snap.Changed = map[model.ServiceKey]struct{}{}
	return &out, watcher.SyncInfo{}
}

// debugFixture is one ClusterIP service with two endpoints, one on this node.
func debugFixture() *model.Snapshot {
	snap := model.NewSnapshot()
	snap.Node = model.NodeInfo{Name: "node-a", PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24")}}
	name := model.ServicePortName{ServiceKey: model.ServiceKey{Namespace: "default", Name: "web"}, Port: "http"}
	snap.Services[name] = &model.ServicePort{Name: name, Protocol: model.TCP, Port: 80,
		ClusterIPs: []netip.Addr{netip.MustParseAddr("10.96.0.10")}, ExternalPolicy: model.PolicyCluster, InternalPolicy: model.PolicyCluster}
	snap.Endpoints[name] = []model.Endpoint{
		{IP: netip.MustParseAddr("10.244.1.5"), Port: 8080, Ready: true, Serving: true, NodeName: "node-a"},
		{IP: netip.MustParseAddr("10.244.2.5"), Port: 8080, Ready: true, Serving: true, NodeName: "node-b"},
	}
	snap.Changed[name.ServiceKey] = struct{}{}
	return snap
}

func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// TestDebugEndpoints: a sync loop running an iptables backend over a fake kernel serves, before its
// first sync, an empty model and no rules yet; after it, the model it synced with the sync's
// facts, and the rules that match the fake kernel's tables exactly.
func TestDebugEndpoints(t *testing.T) {
	fake := iptablestest.NewFake()
	opts := iptables.DefaultOptions(model.IPv4)
	opts.LocalDetector.ClusterCIDRs = []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}
	backend, err := iptables.NewProxier(iptables.Config{Options: opts, IPTables: fake})
	if err != nil {
		t.Fatal(err)
	}
	src := &staticSource{snap: debugFixture()}
	loop, err := syncloop.New(syncloop.Config{Name: "iptables", MinSyncPeriod: time.Second, SyncPeriod: time.Hour, Source: src, Backends: []model.Backend{backend}})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	addDebugHandlers(mux, loop, backend)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	if code, body := get(t, srv.URL+debugRulesPath); code != http.StatusServiceUnavailable {
		t.Errorf("/debug/rules before the first sync: %d %s, want 503", code, body)
	}
	if code, body := get(t, srv.URL+debugModelPath); code != http.StatusOK || !json.Valid(body) {
		t.Errorf("/debug/model before the first sync: %d %s", code, body)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { loop.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	polltest.Eventually(t, "the first sync", func() bool {
		_, syncs := loop.DebugState()
		return !syncs[0].LastSuccess.IsZero()
	})

	code, body := get(t, srv.URL+debugModelPath)
	var dm model.DebugModel
	if err := json.Unmarshal(body, &dm); code != http.StatusOK || err != nil {
		t.Fatalf("/debug/model: %d, %v: %s", code, err, body)
	}
	if len(dm.Services) != 1 || dm.Services[0].String() != "default/web:http" || len(dm.Services[0].ClusterEndpoints) != 2 ||
		!dm.Services[0].Endpoints[0].Local || dm.Services[0].Endpoints[1].Local {
		t.Errorf("/debug/model services = %+v", dm.Services)
	}
	if s, ok := dm.Sync(model.IPv4); !ok || s.LastSuccess.IsZero() || s.LastError != "" || s.ModelChangedAt.After(s.LastSuccess) {
		t.Errorf("/debug/model sync = %+v, %v; want a success after the model's change", s, ok)
	}

	// What explain asks for: only the service ports its packet is addressed to.
	for query, want := range map[string]int{"?dst=10.96.0.10:80&protocol=tcp": 1, "?dst=10.96.0.10:80&protocol=udp": 0, "?dst=10.96.0.10:81": 0, "?services=none": 0} {
		code, body := get(t, srv.URL+debugModelPath+query)
		var part model.DebugModel
		if err := json.Unmarshal(body, &part); code != http.StatusOK || err != nil || len(part.Services) != want || len(part.Syncs) != 1 {
			t.Errorf("/debug/model%s: %d, %v, %d services and %d syncs; want %d services and the sync", query, code, err, len(part.Services), len(part.Syncs), want)
		}
	}
	if code, _ := get(t, srv.URL+debugModelPath+"?dst=10.96.0.10"); code != http.StatusBadRequest {
		t.Errorf("/debug/model?dst without a port: %d, want 400", code)
	}

	code, rules := get(t, srv.URL+debugRulesPath)
	if code != http.StatusOK {
		t.Fatalf("/debug/rules: %d %s", code, rules)
	}
	d, err := iptables.FindDrift(rules, []byte(fake.Dump()))
	if err != nil || !d.None() {
		t.Errorf("the served rules differ from the synced tables: %+v, %v", d, err)
	}
}

// TestDebugRulesNeedsABackendThatSaysThem: a backend that cannot say its rules answers 501.
func TestDebugRulesNeedsABackendThatSaysThem(t *testing.T) {
	mux := http.NewServeMux()
	addDebugHandlers(mux, nil, nil)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	if code, _ := get(t, srv.URL+debugRulesPath); code != http.StatusNotImplemented {
		t.Errorf("/debug/rules without a backend that says its rules: %d, want 501", code)
	}
}
