package watcher

import (
	"context"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"

	"github.com/switchyard/switchyard/internal/metricstest"
	"github.com/switchyard/switchyard/internal/polltest"
	"github.com/switchyard/switchyard/proxier/metrics"
	"github.com/switchyard/switchyard/proxier/model"
)

const testNode = "node-a"

// harness runs a Watcher against client-go's fake clientset.
type harness struct {
	t       *testing.T
	client  *fake.Clientset
	w       *Watcher
	ctx     context.Context
	changes atomic.Int64 // OnChange calls

	waitWatching func() // blocks until every informer has an open watch
}

// newHarness builds a Watcher over a fake clientset holding objs, but does not start it.
func newHarness(t *testing.T, objs ...runtime.Object) *harness {
	t.Helper()
	return newHarnessWith(t, Options{NodeName: testNode}, objs...)
}

// newHarnessWith is newHarness with the watcher's options.
func newHarnessWith(t *testing.T, opts Options, objs ...runtime.Object) *harness {
	t.Helper()
	client := fake.NewSimpleClientset(objs...)
	h := &harness{t: t, client: client}
	// The fake only sends events to watchers that exist when the event happens, and an informer
	// lists before it watches. Objects changed in between would be lost, so tests wait until every
	// informer is watching before they change anything.
	var mu sync.Mutex
	watching := map[string]bool{}
	client.PrependWatchReactor("*", func(action clienttesting.Action) (bool, watch.Interface, error) {
		gvr := action.GetResource()
		wi, err := client.Tracker().Watch(gvr, action.GetNamespace())
		if err != nil {
			return false, nil, err
		}
		mu.Lock()
		watching[gvr.Resource] = true
		mu.Unlock()
		return true, wi, nil
	})
	nodeFactory := informers.NewSharedInformerFactory(client, 0)
	w, err := New(client, nodeFactory, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.w = w
	w.OnChange(func() { h.changes.Add(1) })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	h.ctx = ctx
	h.waitWatching = func() {
		polltest.Eventually(t, "all informers watching", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return watching["services"] && watching["endpointslices"] && watching["nodes"]
		})
	}
	return h
}

// start starts the informers and waits for the caches and the watches.
func (h *harness) start() {
	h.t.Helper()
	h.w.Start(h.ctx)
	if !h.w.WaitForCacheSync(h.ctx) {
		h.t.Fatal("caches never synced")
	}
	h.waitWatching()
}

// peek reads the watcher's state without consuming pending changes.
func (h *harness) peek(fn func(*tracker) bool) bool {
	h.w.mu.Lock()
	defer h.w.mu.Unlock()
	return fn(h.w.state)
}

func (h *harness) waitService(key model.ServiceKey, present bool) {
	h.t.Helper()
	polltest.Eventually(h.t, "service "+key.String(), func() bool {
		return h.peek(func(t *tracker) bool { _, ok := t.services[key]; return ok == present })
	})
}

func (h *harness) waitEndpoints(key model.ServiceKey, n int) {
	h.t.Helper()
	polltest.Eventually(h.t, "endpoints of "+key.String(), func() bool {
		return h.peek(func(t *tracker) bool {
			total := 0
			for _, eps := range t.endpoints[key] {
				total += len(eps)
			}
			return total == n
		})
	})
}

// createService, updateService, createSlice and updateSlice write to the fake API server; the test
// ends if it refuses.
func (h *harness) createService(s *v1.Service) {
	h.t.Helper()
	_, err := h.client.CoreV1().Services(s.Namespace).Create(h.ctx, s, metav1.CreateOptions{})
	h.mustWrite("create service", err)
}

func (h *harness) updateService(s *v1.Service) {
	h.t.Helper()
	_, err := h.client.CoreV1().Services(s.Namespace).Update(h.ctx, s, metav1.UpdateOptions{})
	h.mustWrite("update service", err)
}

func (h *harness) createSlice(es *discovery.EndpointSlice) {
	h.t.Helper()
	_, err := h.client.DiscoveryV1().EndpointSlices(es.Namespace).Create(h.ctx, es, metav1.CreateOptions{})
	h.mustWrite("create slice", err)
}

func (h *harness) updateSlice(es *discovery.EndpointSlice) {
	h.t.Helper()
	_, err := h.client.DiscoveryV1().EndpointSlices(es.Namespace).Update(h.ctx, es, metav1.UpdateOptions{})
	h.mustWrite("update slice", err)
}

func (h *harness) mustWrite(what string, err error) {
	h.t.Helper()
	if err != nil {
		h.t.Fatalf("%s: %v", what, err)
	}
}

func keys(m map[model.ServiceKey]struct{}) []string {
	var out []string
	for k := range m {
		out = append(out, k.String())
	}
	slices.Sort(out)
	return out
}

func wantChanged(t *testing.T, snap *model.Snapshot, want ...string) {
	t.Helper()
	slices.Sort(want)
	if got := keys(snap.Changed); !slices.Equal(got, want) {
		t.Errorf("Changed = %v, want %v", got, want)
	}
}

var (
	webKey   = model.ServiceKey{Namespace: "ns", Name: "web"}
	otherKey = model.ServiceKey{Namespace: "ns", Name: "other"}
)

func TestWatcherNoSnapshotBeforeSync(t *testing.T) {
	h := newHarness(t, svc("ns", "web", "10.96.0.10"))
	if snap, _ := h.w.Snapshot(true); snap != nil {
		t.Fatalf("Snapshot before sync = %+v, want nil", snap)
	}
	// Informers not started: the caches cannot sync, and a cancelled wait says so.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if h.w.WaitForCacheSync(ctx) {
		t.Fatal("WaitForCacheSync reported success with informers never started")
	}
	if snap, _ := h.w.Snapshot(true); snap != nil {
		t.Fatal("Snapshot after a failed WaitForCacheSync must be nil")
	}
	if h.changes.Load() != 0 {
		t.Error("OnChange fired before the caches synced")
	}

	h.start()
	if h.changes.Load() != 1 {
		t.Errorf("OnChange fired %d times at sync, want once", h.changes.Load())
	}
	snap, _ := h.w.Snapshot(true)
	if snap == nil || snap.Services[spn("ns", "web", "http")] == nil || !snap.Full {
		t.Fatalf("first snapshot after sync = %+v, want ns/web and Full", snap)
	}
	wantChanged(t, snap, "ns/web")
}

func TestWatcherServiceAndEndpointLifecycle(t *testing.T) {
	h := newHarness(t,
		svc("ns", "web", "10.96.0.10"),
		slice("ns", "web-1", "web", []discovery.Endpoint{ep("10.244.1.5", testNode), ep("10.244.2.5", "node-b")}),
		&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: testNode}},
	)
	h.start()

	snap, _ := h.w.Snapshot(false)
	web := spn("ns", "web", "http")
	if got := snap.Endpoints[web]; len(got) != 2 || got[0].IP != netip.MustParseAddr("10.244.1.5") || got[0].Port != 8080 {
		t.Fatalf("endpoints of %s = %+v", web, got)
	}
	wantChanged(t, snap, "ns/web")
	if snap.Full {
		t.Error("Full must follow the argument")
	}

	// Nothing happened: an empty change set, the same model.
	again, _ := h.w.Snapshot(false)
	wantChanged(t, again)
	if !reflect.DeepEqual(again.Services, snap.Services) || !reflect.DeepEqual(again.Endpoints, snap.Endpoints) {
		t.Error("model differs between two snapshots with no events")
	}

	// A real service change.
	svcChanges := metricstest.Value(t, metrics.ServiceChangesTotal)
	h.updateService(svc("ns", "web", "10.96.0.10", func(s *v1.Service) { s.Spec.Ports[0].Port = 8000 }))
	polltest.Eventually(t, "port change", func() bool {
		return h.peek(func(t *tracker) bool { return t.services[webKey][web].Port == 8000 })
	})
	if got := metricstest.Value(t, metrics.ServiceChangesPending); got != 1 {
		t.Errorf("service changes pending = %v, want 1", got)
	}
	snap, _ = h.w.Snapshot(false)
	wantChanged(t, snap, "ns/web")
	if snap.Services[web].Port != 8000 {
		t.Errorf("port = %d, want 8000", snap.Services[web].Port)
	}
	if got := metricstest.Value(t, metrics.ServiceChangesTotal) - svcChanges; got != 1 {
		t.Errorf("service changes counted %v, want 1", got)
	}
	if got := metricstest.Value(t, metrics.ServiceChangesPending); got != 0 {
		t.Errorf("service changes pending after snapshot = %v, want 0", got)
	}

	// An annotation-only update is a no-op. The marker service is created afterwards through the
	// same informer, so once it is seen the no-op update has been handled too.
	notified := h.changes.Load()
	h.updateService(svc("ns", "web", "10.96.0.10", func(s *v1.Service) {
		s.Spec.Ports[0].Port = 8000
		s.Annotations = map[string]string{"touched": "yes"}
	}))
	h.createService(svc("ns", "other", "10.96.0.11"))
	h.waitService(otherKey, true)
	snap, _ = h.w.Snapshot(false)
	wantChanged(t, snap, "ns/other")
	if got := h.changes.Load() - notified; got != 1 {
		t.Errorf("OnChange fired %d times, want once (for the marker only)", got)
	}

	// Endpoint change.
	h.updateSlice(slice("ns", "web-1", "web", []discovery.Endpoint{ep("10.244.1.5", testNode)}))
	h.waitEndpoints(webKey, 1)
	snap, _ = h.w.Snapshot(false)
	wantChanged(t, snap, "ns/web")
	if got := snap.Endpoints[web]; len(got) != 1 {
		t.Errorf("endpoints = %+v, want one", got)
	}

	// Deletion: in Changed, gone from the maps.
	if err := h.client.CoreV1().Services("ns").Delete(h.ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	h.waitService(webKey, false)
	snap, _ = h.w.Snapshot(false)
	wantChanged(t, snap, "ns/web")
	if _, ok := snap.Services[web]; ok {
		t.Error("deleted service still in Services")
	}
	if _, ok := snap.Endpoints[web]; ok {
		t.Error("deleted service still in Endpoints")
	}
	if snap.Services[spn("ns", "other", "http")] == nil {
		t.Error("deleting ns/web lost ns/other")
	}
}

// TestWatcherChangeCancelledBeforeSync: a change and its reversal between two snapshots leave
// nothing to do, and the trigger time of the cancelled change is not reported.
func TestWatcherChangeCancelledBeforeSync(t *testing.T) {
	original := slice("ns", "web-1", "web", []discovery.Endpoint{ep("10.244.1.5", testNode)})
	h := newHarness(t, svc("ns", "web", "10.96.0.10"), original)
	h.start()
	h.w.Snapshot(true)

	trigger := metav1.Now().Add(time.Minute).UTC().Format(time.RFC3339Nano)
	h.updateSlice(slice("ns", "web-1", "web", []discovery.Endpoint{ep("10.244.1.5", testNode), ep("10.244.1.6", testNode)},
		func(es *discovery.EndpointSlice) {
			es.Annotations = map[string]string{v1.EndpointsLastChangeTriggerTime: trigger}
		}))
	h.waitEndpoints(webKey, 2)
	if got := metricstest.Value(t, metrics.EndpointChangesPending); got != 1 {
		t.Errorf("endpoint changes pending = %v, want 1", got)
	}
	h.updateSlice(original)
	h.waitEndpoints(webKey, 1)
	if got := metricstest.Value(t, metrics.EndpointChangesPending); got != 0 {
		t.Errorf("endpoint changes pending after the reversal = %v, want 0", got)
	}
	snap, info := h.w.Snapshot(false)
	wantChanged(t, snap)
	if len(info.TriggerTimes) != 0 {
		t.Errorf("trigger times %v of a cancelled change were reported", info.TriggerTimes)
	}
}

func TestWatcherTriggerTimes(t *testing.T) {
	h := newHarness(t, svc("ns", "web", "10.96.0.10"))
	h.start()
	h.w.Snapshot(true)

	old := h.w.started.Add(-time.Hour)
	fresh := h.w.started.Add(time.Second)
	h.createSlice(slice("ns", "web-1", "web", []discovery.Endpoint{ep("10.244.1.5", testNode)},
		func(es *discovery.EndpointSlice) {
			es.Annotations = map[string]string{v1.EndpointsLastChangeTriggerTime: fresh.Format(time.RFC3339Nano)}
		}))
	h.createSlice(slice("ns", "web-2", "web", []discovery.Endpoint{ep("10.244.1.6", testNode)},
		func(es *discovery.EndpointSlice) {
			es.Annotations = map[string]string{v1.EndpointsLastChangeTriggerTime: old.Format(time.RFC3339Nano)}
		}))
	h.waitEndpoints(webKey, 2)
	_, info := h.w.Snapshot(false)
	if len(info.TriggerTimes) != 1 || !info.TriggerTimes[0].Equal(fresh) {
		t.Errorf("trigger times = %v, want only %v (times before the watcher started are ignored)", info.TriggerTimes, fresh)
	}
	if _, info := h.w.Snapshot(false); len(info.TriggerTimes) != 0 {
		t.Errorf("trigger times reported twice: %v", info.TriggerTimes)
	}
}

func TestWatcherResourceVersionBumpIsDropped(t *testing.T) {
	es := slice("ns", "web-1", "web", []discovery.Endpoint{ep("10.244.1.5", testNode)},
		func(es *discovery.EndpointSlice) { es.ResourceVersion = "1" })
	h := newHarness(t, svc("ns", "web", "10.96.0.10"), es)
	h.start()
	h.w.Snapshot(true)
	epChanges := metricstest.Value(t, metrics.EndpointChangesTotal)

	bumped := es.DeepCopy()
	bumped.ResourceVersion = "2"
	bumped.Annotations = map[string]string{"kubectl.kubernetes.io/restartedAt": "now"}
	h.updateSlice(bumped)
	marker := slice("ns", "web-2", "web", []discovery.Endpoint{ep("10.244.1.6", testNode)})
	h.createSlice(marker)
	h.waitEndpoints(webKey, 2)
	snap, _ := h.w.Snapshot(false)
	wantChanged(t, snap, "ns/web") // from the marker only
	if got := metricstest.Value(t, metrics.EndpointChangesTotal) - epChanges; got != 1 {
		t.Errorf("endpoint changes counted %v, want 1 (the bump is not a change)", got)
	}
}

func TestWatcherBadServiceIsolated(t *testing.T) {
	before := invalidCount(t, kindService, reasonInvalidIP)
	h := newHarness(t,
		svc("ns", "good", "10.96.0.10"),
		svc("ns", "bad", "10.96.0.999"),
		svc("ns", "half", "10.96.0.12", func(s *v1.Service) {
			s.Spec.Ports = append(s.Spec.Ports, v1.ServicePort{Name: "broken", Port: 0})
		}),
		svc("ns", "theirs", "10.96.0.13", func(s *v1.Service) { s.Labels = map[string]string{LabelServiceProxyName: "x"} }),
	)
	h.start()
	snap, _ := h.w.Snapshot(true)
	var got []string
	for name := range snap.Services {
		got = append(got, name.String())
	}
	slices.Sort(got)
	if want := []string{"ns/good:http", "ns/half:http"}; !slices.Equal(got, want) {
		t.Errorf("services = %v, want %v", got, want)
	}
	if d := invalidCount(t, kindService, reasonInvalidIP) - before; d != 1 {
		t.Errorf("invalid-ip rejections counted %v, want 1", d)
	}

	// A good service turning bad loses its rules (it is in Changed and out of the model); the
	// others are untouched.
	h.updateService(svc("ns", "good", "not-an-ip"))
	h.waitService(model.ServiceKey{Namespace: "ns", Name: "good"}, false)
	snap, _ = h.w.Snapshot(false)
	wantChanged(t, snap, "ns/good")
	if snap.Services[spn("ns", "half", "http")] == nil {
		t.Error("ns/half lost")
	}
}

func TestWatcherNode(t *testing.T) {
	node := &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: testNode, Labels: map[string]string{model.ZoneLabel: "zone-a"}},
		Spec:       v1.NodeSpec{PodCIDR: "10.244.1.0/24", PodCIDRs: []string{"10.244.1.0/24"}},
	}
	h := newHarness(t, node, &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-b",
		Labels: map[string]string{model.ZoneLabel: "zone-b"}}},
		svc("ns", "web", "10.96.0.10"), svc("ns", "other", "10.96.0.11"))
	h.start()
	snap, _ := h.w.Snapshot(true)
	if snap.Node.Name != testNode || snap.Node.Zone() != "zone-a" ||
		!slices.Equal(snap.Node.PodCIDRs, []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24")}) {
		t.Fatalf("node = %+v", snap.Node)
	}
	first := snap.Node

	// Another node's change is not ours.
	nodeB := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-b", Labels: map[string]string{model.ZoneLabel: "zone-c"}}}
	if _, err := h.client.CoreV1().Nodes().Update(h.ctx, nodeB, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Our node's zone changes: every service is marked changed.
	moved := node.DeepCopy()
	moved.Labels[model.ZoneLabel] = "zone-z"
	moved.Spec.PodCIDRs = []string{"10.244.9.0/24"}
	if _, err := h.client.CoreV1().Nodes().Update(h.ctx, moved, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	polltest.Eventually(t, "node update", func() bool {
		return h.peek(func(t *tracker) bool { return t.node.Zone() == "zone-z" })
	})
	snap, _ = h.w.Snapshot(false)
	wantChanged(t, snap, "ns/web", "ns/other")
	if snap.Node.Zone() != "zone-z" || snap.Node.PodCIDRs[0] != netip.MustParsePrefix("10.244.9.0/24") {
		t.Errorf("node = %+v", snap.Node)
	}
	// The earlier snapshot's NodeInfo is untouched.
	if first.Zone() != "zone-a" || first.PodCIDRs[0] != netip.MustParsePrefix("10.244.1.0/24") {
		t.Errorf("published NodeInfo was mutated: %+v", first)
	}
	// A label that is not a topology label, and a status update, are no change to the model. The
	// zone change after them is; OnChange must fire for it alone.
	notified := h.changes.Load()
	relabelled := moved.DeepCopy()
	relabelled.Labels["team"] = "payments"
	relabelled.Status.Conditions = []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue}}
	if _, err := h.client.CoreV1().Nodes().Update(h.ctx, relabelled, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	rezoned := relabelled.DeepCopy()
	rezoned.Labels[model.ZoneLabel] = "zone-y"
	if _, err := h.client.CoreV1().Nodes().Update(h.ctx, rezoned, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	polltest.Eventually(t, "second node update", func() bool {
		return h.peek(func(t *tracker) bool { return t.node.Zone() == "zone-y" })
	})
	if got := h.changes.Load() - notified; got != 1 {
		t.Errorf("OnChange fired %d times for a no-op and a zone change, want 1", got)
	}
	if snap, _ := h.w.Snapshot(false); len(snap.Node.Labels) != 1 {
		t.Errorf("node labels %v, want only the topology label", snap.Node.Labels)
	}
	// A new service afterwards is the only change.
	h.createService(svc("ns", "third", "10.96.0.12"))
	h.waitService(model.ServiceKey{Namespace: "ns", Name: "third"}, true)
	snap, _ = h.w.Snapshot(false)
	wantChanged(t, snap, "ns/third")
}

// TestSnapshotsAreNotMutated: a backend may keep a snapshot while the watcher moves on.
func TestSnapshotsAreNotMutated(t *testing.T) {
	h := newHarness(t, svc("ns", "web", "10.96.0.10"),
		slice("ns", "web-1", "web", []discovery.Endpoint{ep("10.244.1.5", testNode)}))
	h.start()
	snap, _ := h.w.Snapshot(true)
	services := maps.Clone(snap.Services)
	port := *snap.Services[spn("ns", "web", "http")]
	eps := slices.Clone(snap.Endpoints[spn("ns", "web", "http")])

	h.updateService(svc("ns", "web", "10.96.0.10", func(s *v1.Service) { s.Spec.Ports[0].Port = 81 }))
	h.updateSlice(slice("ns", "web-1", "web", []discovery.Endpoint{ep("10.244.1.9", testNode), ep("10.244.1.8", testNode)}))
	h.createService(svc("ns", "other", "10.96.0.11"))
	h.waitService(otherKey, true)
	h.waitEndpoints(webKey, 2)
	h.w.Snapshot(false)

	if !maps.Equal(snap.Services, services) {
		t.Error("published Services map changed")
	}
	if !reflect.DeepEqual(*snap.Services[spn("ns", "web", "http")], port) {
		t.Error("published ServicePort changed")
	}
	if !reflect.DeepEqual(snap.Endpoints[spn("ns", "web", "http")], eps) {
		t.Error("published endpoints changed")
	}
}

// With kube-proxy's AllowServiceExternalIPs gate off, external IPs are left out of the model and
// nothing else changes; with it on (the default), they are kept.
func TestWatcherIgnoresExternalIPsWhenTheGateIsOff(t *testing.T) {
	withExternal := svc("ns", "ext", "10.96.0.20", func(s *v1.Service) { s.Spec.ExternalIPs = []string{"203.0.113.10"} })
	for _, ignore := range []bool{false, true} {
		h := newHarnessWith(t, Options{NodeName: testNode, IgnoreExternalIPs: ignore}, withExternal)
		h.start()
		snap, _ := h.w.Snapshot(true)
		sp := snap.Services[spn("ns", "ext", "http")]
		if sp == nil {
			t.Fatalf("ignore=%v: service ns/ext missing", ignore)
		}
		if got := len(sp.ExternalIPs); got != map[bool]int{false: 1, true: 0}[ignore] {
			t.Errorf("ignore=%v: %d external IPs %v", ignore, got, sp.ExternalIPs)
		}
		if len(sp.ClusterIPs) != 1 {
			t.Errorf("ignore=%v: cluster IPs %v", ignore, sp.ClusterIPs)
		}
	}
}
