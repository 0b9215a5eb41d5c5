// Package watcher turns the Kubernetes API's Services, EndpointSlices and this node's Node object
// into Switchyard's model (package model) and tracks which services changed since the last
// Snapshot. It knows nothing of iptables or IPVS, and nothing of when syncs happen: internal/syncloop
// registers with OnChange, waits for WaitForCacheSync, and takes a Snapshot per sync.
//
// Typical wiring (cmd/switchyard does this):
//
//	w, err := watcher.New(client, nodeFactory, watcher.Options{NodeName: node})
//	loop, err := syncloop.New(syncloop.Config{Source: w, Backends: backends, ...}) // calls w.OnChange
//	w.Start(ctx)
//	loop.Run(ctx) // w.WaitForCacheSync, then one w.Snapshot per sync
//
// A failed sync consumes the snapshot's Changed set; that is safe because the loop's retry is Full.
package watcher

import (
	"context"
	"fmt"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/switchyard/switchyard/proxier/metrics"
	"github.com/switchyard/switchyard/proxier/model"
)

// Options configures a Watcher.
type Options struct {
	// NodeName is the name of the Node this proxy runs on (kube-proxy's --hostname-override or the
	// host name). Only that Node object is read; endpoints whose nodeName equals it are local.
	NodeName string
	// ResyncPeriod is the informers' resync period (kube-proxy's --config-sync-period, 15m by
	// default); 0 disables resyncs. Resyncs never reach the model: an update with an unchanged
	// resourceVersion is skipped.
	ResyncPeriod time.Duration
	// Clock dates the watcher's start, so that EndpointSlice trigger times older than the process
	// are not observed as network-programming latency. Defaults to the real clock.
	Clock clock.PassiveClock
	// IgnoreExternalIPs leaves every Service's spec.externalIPs out of the model, as kube-proxy does
	// when its AllowServiceExternalIPs feature gate is set to false.
	IgnoreExternalIPs bool
}

// SyncInfo carries facts about the changes a Snapshot consumed.
type SyncInfo struct {
	// TriggerTimes are the endpoints.kubernetes.io/last-change-trigger-time values of the
	// EndpointSlice changes the snapshot includes (only those newer than the watcher), sorted.
	TriggerTimes []time.Time
}

// ObserveProgrammed records network-programming latency for every consumed change, as of now, for
// the backend of family. Call it after the snapshot was applied successfully, once per family: as in
// kube-proxy, each family's rules programmed the change.
func (s SyncInfo) ObserveProgrammed(family model.IPFamily, now time.Time) {
	h := metrics.NetworkProgrammingLatency.WithLabelValues(family.String())
	for _, t := range s.TriggerTimes {
		h.Observe(now.Sub(t).Seconds())
	}
}

// Watcher keeps the model current from informer events. All methods are safe for concurrent use.
type Watcher struct {
	opts      Options
	factory   informers.SharedInformerFactory
	nodes     informers.SharedInformerFactory
	started   time.Time
	hasSynced []cache.InformerSynced

	mu       sync.Mutex
	state    *tracker
	synced   bool
	handlers []func()
}

// New builds a Watcher. It creates its own informer factory for Services and EndpointSlices, with
// kube-proxy's label selector, and registers on nodeFactory's Node informer (shared with other
// controllers) for the Node named opts.NodeName. Informers start with Start.
func New(client kubernetes.Interface, nodeFactory informers.SharedInformerFactory, opts Options) (*Watcher, error) {
	if opts.NodeName == "" {
		return nil, fmt.Errorf("watcher: a node name is required")
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	w := &Watcher{
		opts: opts,
		factory: informers.NewSharedInformerFactoryWithOptions(client, opts.ResyncPeriod,
			informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = proxySelector }),
			informers.WithTransform(trimForProxy)),
		nodes:   nodeFactory,
		started: opts.Clock.Now(),
		state:   newTracker(opts.NodeName),
	}

	svcReg, err := w.factory.Core().V1().Services().Informer().AddEventHandler(w.eventHandler(w.onService))
	if err != nil {
		return nil, fmt.Errorf("watcher: register service handler: %w", err)
	}
	sliceReg, err := w.factory.Discovery().V1().EndpointSlices().Informer().AddEventHandler(w.eventHandler(w.onSlice))
	if err != nil {
		return nil, fmt.Errorf("watcher: register endpointslice handler: %w", err)
	}
	nodeReg, err := nodeFactory.Core().V1().Nodes().Informer().AddEventHandler(cache.FilteringResourceEventHandler{
		FilterFunc: func(obj any) bool { return objectName(obj) == opts.NodeName },
		Handler: cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { w.onNode(obj, false) },
			UpdateFunc: func(old, cur any) { w.onUpdate(old, cur, w.onNode) },
			DeleteFunc: func(obj any) { w.onNode(obj, true) },
		},
	})
	if err != nil {
		return nil, fmt.Errorf("watcher: register node handler: %w", err)
	}
	// A registration's HasSynced is true only once the handler has seen the initial list, which is
	// what "the model is complete" means; the informer's own HasSynced can be true earlier.
	w.hasSynced = []cache.InformerSynced{svcReg.HasSynced, sliceReg.HasSynced, nodeReg.HasSynced}
	return w, nil
}

// OnChange registers fn to be called whenever the model changes after the caches have synced, and
// once when they first have. fn must not block (the sync loop's handler only queues a sync).
// Register before Start.
func (w *Watcher) OnChange(fn func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.handlers = append(w.handlers, fn)
}

// Start starts the informers. Starting the shared node factory here is harmless for its other users:
// a factory starts each informer once.
func (w *Watcher) Start(ctx context.Context) {
	w.factory.Start(ctx.Done())
	w.nodes.Start(ctx.Done())
}

// WaitForCacheSync blocks until the Service, EndpointSlice and Node caches have synced (true) or ctx
// ends (false). Snapshot returns nothing before it has returned true.
func (w *Watcher) WaitForCacheSync(ctx context.Context) bool {
	if !cache.WaitForCacheSync(ctx.Done(), w.hasSynced...) {
		return false
	}
	w.mu.Lock()
	w.synced = true
	handlers := append([]func(){}, w.handlers...)
	w.mu.Unlock()
	klog.InfoS("Service, EndpointSlice and Node caches synced", "node", w.opts.NodeName)
	for _, fn := range handlers {
		fn()
	}
	return true
}

// Snapshot returns the full current model, with snap.Changed naming every service that changed since
// the previous call (deleted ones included), and consumes those changes. full is copied into
// snap.Full. Before the caches have synced it returns nil: a partial model must never be applied,
// because it would delete the rules of every service not yet listed.
func (w *Watcher) Snapshot(full bool) (*model.Snapshot, SyncInfo) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.synced {
		return nil, SyncInfo{}
	}
	return w.state.snapshot(full)
}

// trimForProxy drops, before the informer stores an object, the parts of Services and EndpointSlices
// the proxy never reads: server-side apply's managedFields, kubectl's last-applied-configuration
// annotation and each endpoint's targetRef. The informer keeps every object for the life of the
// process, and at 10k services managedFields alone were a tenth of the daemon's live heap. The
// objects are the informer's own decoded copies, so changing them in place is allowed.
func trimForProxy(obj any) (any, error) {
	switch o := obj.(type) {
	case *v1.Service:
		o.ManagedFields = nil
		delete(o.Annotations, v1.LastAppliedConfigAnnotation)
	case *discovery.EndpointSlice:
		o.ManagedFields = nil
		delete(o.Annotations, v1.LastAppliedConfigAnnotation)
		for i := range o.Endpoints {
			o.Endpoints[i].TargetRef = nil
			o.Endpoints[i].DeprecatedTopology = nil
		}
	}
	return obj, nil
}

// eventHandler sends an informer's adds, updates and deletes to handle; updates pass through onUpdate,
// which drops resyncs.
func (w *Watcher) eventHandler(handle func(obj any, deleted bool)) cache.ResourceEventHandlerFuncs {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { handle(obj, false) },
		UpdateFunc: func(old, cur any) { w.onUpdate(old, cur, handle) },
		DeleteFunc: func(obj any) { handle(obj, true) },
	}
}

// onUpdate skips informer resyncs (same resourceVersion: nothing can have changed) and otherwise
// handles the new object.
func (w *Watcher) onUpdate(old, cur any, handle func(obj any, deleted bool)) {
	o, ok1 := old.(metav1.Object)
	c, ok2 := cur.(metav1.Object)
	if ok1 && ok2 && o.GetResourceVersion() != "" && o.GetResourceVersion() == c.GetResourceVersion() {
		return
	}
	handle(cur, false)
}

func (w *Watcher) onService(obj any, deleted bool) {
	svc, ok := unwrapTombstone(obj).(*v1.Service)
	if !ok {
		klog.ErrorS(nil, "Unexpected object in service event", "type", fmt.Sprintf("%T", obj))
		return
	}
	key := model.ServiceKey{Namespace: svc.Namespace, Name: svc.Name}
	var ports servicePorts
	if !deleted {
		var rejects []rejection
		ports, rejects = convertService(svc)
		report(rejects)
		if w.opts.IgnoreExternalIPs {
			for _, sp := range ports {
				sp.ExternalIPs = nil
			}
		}
	}
	w.update(func(t *tracker) bool { return t.setService(key, ports) })
}

func (w *Watcher) onSlice(obj any, deleted bool) {
	es, ok := unwrapTombstone(obj).(*discovery.EndpointSlice)
	if !ok {
		klog.ErrorS(nil, "Unexpected object in endpointslice event", "type", fmt.Sprintf("%T", obj))
		return
	}
	ref := sliceRef{Namespace: es.Namespace, Name: es.Name}
	var (
		svc     model.ServiceKey
		info    *sliceInfo
		trigger time.Time
	)
	if !deleted {
		var rejects []rejection
		var usable bool
		svc, info, rejects, usable = convertEndpointSlice(es)
		report(rejects)
		if !usable {
			info = nil // treated like a deletion: whatever the slice held before is withdrawn
		}
		trigger = w.triggerTime(es)
	}
	w.update(func(t *tracker) bool { return t.setSlice(ref, svc, info, trigger) })
}

func (w *Watcher) onNode(obj any, deleted bool) {
	node, ok := unwrapTombstone(obj).(*v1.Node)
	if !ok {
		klog.ErrorS(nil, "Unexpected object in node event", "type", fmt.Sprintf("%T", obj))
		return
	}
	info := model.NodeInfo{Name: w.opts.NodeName}
	if !deleted {
		cidrs := node.Spec.PodCIDRs
		if len(cidrs) == 0 && node.Spec.PodCIDR != "" {
			cidrs = []string{node.Spec.PodCIDR}
		}
		var rejects []rejection
		info, rejects = nodeInfoFrom(w.opts.NodeName, node.Labels, cidrs)
		report(rejects)
	}
	w.update(func(t *tracker) bool {
		changed := t.setNode(info)
		if changed {
			klog.V(2).InfoS("Node facts changed", "node", info.Name, "zone", info.Zone(), "podCIDRs", info.PodCIDRs)
		}
		return changed
	})
}

// update applies fn to the model and, if it changed something after the caches synced, tells the
// registered handlers (outside the lock, so a handler may call Snapshot).
func (w *Watcher) update(fn func(*tracker) bool) {
	w.mu.Lock()
	changed := fn(w.state)
	var handlers []func()
	if changed && w.synced {
		handlers = append(handlers, w.handlers...)
	}
	w.mu.Unlock()
	for _, h := range handlers {
		h()
	}
}

// triggerTime reads the EndpointSlice controller's last-change-trigger-time, ignoring times from
// before this watcher started: those changes were programmed by a previous process (or never
// observed by this one), and reporting them would poison the latency histogram at every restart.
func (w *Watcher) triggerTime(es *discovery.EndpointSlice) time.Time {
	s, ok := es.Annotations[v1.EndpointsLastChangeTriggerTime]
	if !ok {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		klog.V(4).InfoS("Ignoring unparseable trigger time", "endpointslice", es.Namespace+"/"+es.Name, "value", s)
		return time.Time{}
	}
	if !t.After(w.started) {
		return time.Time{}
	}
	return t
}

// report logs and counts every rejection.
func report(rejects []rejection) {
	for _, r := range rejects {
		klog.ErrorS(nil, "Refusing invalid input; other services are unaffected",
			"kind", r.Kind, "object", r.Object, "part", r.Part, "reason", r.Reason, "value", r.Detail)
		metrics.InvalidObjectsTotal.WithLabelValues(r.Kind, r.Reason).Inc()
	}
}

func unwrapTombstone(obj any) any {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		return t.Obj
	}
	return obj
}

func objectName(obj any) string {
	if o, ok := unwrapTombstone(obj).(metav1.Object); ok {
		return o.GetName()
	}
	return ""
}
