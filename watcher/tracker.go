package watcher

import (
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/switchyard/switchyard/proxier/metrics"
	"github.com/switchyard/switchyard/proxier/model"
)

// servicePorts is one service's converted ports, keyed by port name.
type servicePorts = map[model.ServicePortName]*model.ServicePort

// serviceEndpoints is one service's merged endpoints, keyed by slice port name and protocol.
type serviceEndpoints = map[portKey][]model.Endpoint

// sliceRef names an EndpointSlice object.
type sliceRef struct{ Namespace, Name string }

// tracker is the watcher's model state and its change tracking, free of client-go so that it can be
// tested and fuzzed directly. It is not safe for concurrent use; the Watcher serialises calls.
//
// Like kube-proxy's change trackers, it remembers for each service with unpublished changes what the
// service looked like when it was last published ("previous"). An update that brings the service back
// to that value cancels the pending change, so resourceVersion bumps and annotation-only edits never
// reach a backend.
type tracker struct {
	nodeName string

	services  map[model.ServiceKey]servicePorts
	slices    map[model.ServiceKey]map[string]*sliceInfo // by slice name
	sliceSvc  map[sliceRef]model.ServiceKey              // which service a slice was filed under
	endpoints map[model.ServiceKey]serviceEndpoints

	prevServices  map[model.ServiceKey]servicePorts     // pending service changes: published value
	prevEndpoints map[model.ServiceKey]serviceEndpoints // pending endpoint changes: published value
	triggerTimes  map[model.ServiceKey][]time.Time      // of pending endpoint changes

	node        model.NodeInfo
	nodeChanged bool // node facts differ from the last published snapshot

	// published is the last snapshot handed out. The next one starts from copies of its maps and
	// redoes only the services with pending changes: copying a map is several times cheaper than
	// rebuilding it entry by entry, and at 10k services the rebuild was most of an endpoint
	// change's time between the API server and the backend.
	published *model.Snapshot
}

func newTracker(nodeName string) *tracker {
	return &tracker{
		nodeName:      nodeName,
		services:      map[model.ServiceKey]servicePorts{},
		slices:        map[model.ServiceKey]map[string]*sliceInfo{},
		sliceSvc:      map[sliceRef]model.ServiceKey{},
		endpoints:     map[model.ServiceKey]serviceEndpoints{},
		prevServices:  map[model.ServiceKey]servicePorts{},
		prevEndpoints: map[model.ServiceKey]serviceEndpoints{},
		triggerTimes:  map[model.ServiceKey][]time.Time{},
		node:          model.NodeInfo{Name: nodeName},
	}
}

// setService records a service's converted ports (nil or empty: the service is gone or not proxied).
// It reports whether the service's model changed.
func (t *tracker) setService(key model.ServiceKey, ports servicePorts) bool {
	if changed, _ := track(t.services, t.prevServices, key, ports, equalPorts); !changed {
		return false
	}
	metrics.ServiceChangesTotal.Inc()
	metrics.ServiceChangesPending.Set(float64(len(t.prevServices)))
	return true
}

// track sets key's value in cur to next (an empty next deletes it) and keeps in prev the value
// last published for key, which is the value before the first change since then. It reports
// whether next differs from the current value, and whether it is back to the published one: then
// nothing is pending for key any more and prev forgets it.
func track[V ~map[K]E, K comparable, E any](cur, prev map[model.ServiceKey]V, key model.ServiceKey, next V, equal func(a, b V) bool) (changed, reverted bool) {
	old := cur[key]
	if equal(old, next) {
		return false, false
	}
	if _, pending := prev[key]; !pending {
		prev[key] = old
	}
	if len(next) == 0 {
		delete(cur, key)
	} else {
		cur[key] = next
	}
	if equal(prev[key], next) {
		delete(prev, key)
		return true, true
	}
	return true, false
}

// setSlice files an EndpointSlice's content under its service (info nil: the slice is gone) and
// re-merges that service's endpoints. trigger is the slice's last-change-trigger-time, or zero. It
// reports whether any service's endpoints changed.
func (t *tracker) setSlice(ref sliceRef, svc model.ServiceKey, info *sliceInfo, trigger time.Time) bool {
	changed := false
	// A slice relabelled to another service (or deleted) leaves its old service first.
	if old, ok := t.sliceSvc[ref]; ok && (info == nil || old != svc) {
		delete(t.slices[old], ref.Name)
		if len(t.slices[old]) == 0 {
			delete(t.slices, old)
		}
		delete(t.sliceSvc, ref)
		changed = t.remerge(old, trigger) || changed
	}
	if info != nil {
		if t.slices[svc] == nil {
			t.slices[svc] = map[string]*sliceInfo{}
		}
		t.slices[svc][ref.Name] = info
		t.sliceSvc[ref] = svc
		changed = t.remerge(svc, trigger) || changed
	}
	return changed
}

func (t *tracker) remerge(key model.ServiceKey, trigger time.Time) bool {
	merged := mergeEndpoints(t.slices[key], t.nodeName)
	changed, reverted := track(t.endpoints, t.prevEndpoints, key, merged, equalEndpoints)
	switch {
	case !changed:
		return false
	case reverted:
		// Back to what was published: the change, and the latency it would have measured, are void.
		delete(t.triggerTimes, key)
	case !trigger.IsZero():
		t.triggerTimes[key] = append(t.triggerTimes[key], trigger)
	}
	metrics.EndpointChangesTotal.Inc()
	metrics.EndpointChangesPending.Set(float64(len(t.prevEndpoints)))
	return true
}

// setNode records this node's facts. It reports whether they changed; a change marks every service
// changed at the next snapshot, because topology and locality decisions may differ for all of them.
func (t *tracker) setNode(n model.NodeInfo) bool {
	if equalNode(t.node, n) {
		return false
	}
	t.node = n
	t.nodeChanged = true
	return true
}

// pending reports whether the next snapshot would carry any change.
func (t *tracker) pending() bool {
	return len(t.prevServices) > 0 || len(t.prevEndpoints) > 0 || t.nodeChanged
}

// snapshot publishes the full current model plus the changes since the previous snapshot, and
// consumes those changes. The returned maps are new; the values they reference are never mutated.
func (t *tracker) snapshot(full bool) (*model.Snapshot, SyncInfo) {
	snap := &model.Snapshot{
		Changed: map[model.ServiceKey]struct{}{},
		Node:    t.node,
		Full:    full,
	}
	if t.published == nil {
		snap.Services, snap.Endpoints = t.buildView()
	} else {
		snap.Services, snap.Endpoints = t.updateView()
	}
	t.published = snap
	for key := range t.prevServices {
		snap.Changed[key] = struct{}{}
	}
	for key := range t.prevEndpoints {
		snap.Changed[key] = struct{}{}
	}
	if t.nodeChanged {
		// Every service present now; those that just left are already in prevServices.
		for key := range t.services {
			snap.Changed[key] = struct{}{}
		}
	}

	var info SyncInfo
	for _, times := range t.triggerTimes {
		info.TriggerTimes = append(info.TriggerTimes, times...)
	}
	slices.SortFunc(info.TriggerTimes, func(a, b time.Time) int { return a.Compare(b) })

	clear(t.prevServices)
	clear(t.prevEndpoints)
	clear(t.triggerTimes)
	t.nodeChanged = false
	metrics.ServiceChangesPending.Set(0)
	metrics.EndpointChangesPending.Set(0)
	return snap, info
}

// buildView assembles the snapshot maps from the whole model.
func (t *tracker) buildView() (map[model.ServicePortName]*model.ServicePort, map[model.ServicePortName][]model.Endpoint) {
	services := make(map[model.ServicePortName]*model.ServicePort, len(t.services))
	endpoints := make(map[model.ServicePortName][]model.Endpoint, len(t.services))
	for key := range t.services {
		t.viewService(key, services, endpoints)
	}
	return services, endpoints
}

// updateView returns copies of the published snapshot's maps with every service that has pending
// changes taken out and put back as it is now. The published maps themselves are left alone: a
// backend may still hold that snapshot.
func (t *tracker) updateView() (map[model.ServicePortName]*model.ServicePort, map[model.ServicePortName][]model.Endpoint) {
	services, endpoints := maps.Clone(t.published.Services), maps.Clone(t.published.Endpoints)
	redo := func(key model.ServiceKey) {
		// The ports as published: the pending service change's previous value, or else the ports
		// now (only its endpoints changed).
		old, ok := t.prevServices[key]
		if !ok {
			old = t.services[key]
		}
		for name := range old {
			delete(services, name)
			delete(endpoints, name)
		}
		t.viewService(key, services, endpoints)
	}
	for key := range t.prevServices {
		redo(key)
	}
	for key := range t.prevEndpoints {
		if _, done := t.prevServices[key]; !done {
			redo(key)
		}
	}
	return services, endpoints
}

// viewService adds one service's ports, and the endpoints of each, to snapshot maps.
func (t *tracker) viewService(key model.ServiceKey, services map[model.ServicePortName]*model.ServicePort, endpoints map[model.ServicePortName][]model.Endpoint) {
	for name, sp := range t.services[key] {
		services[name] = sp
		if eps := t.endpoints[key][portKey{Name: name.Port, Protocol: sp.Protocol}]; len(eps) > 0 {
			endpoints[name] = eps
		}
	}
}

func equalPorts(a, b servicePorts) bool {
	if len(a) != len(b) {
		return false
	}
	for name, pa := range a {
		pb, ok := b[name]
		if !ok || !reflect.DeepEqual(*pa, *pb) {
			return false
		}
	}
	return true
}

func equalEndpoints(a, b serviceEndpoints) bool {
	if len(a) != len(b) {
		return false
	}
	for k, ea := range a {
		eb, ok := b[k]
		if !ok || !reflect.DeepEqual(ea, eb) {
			return false
		}
	}
	return true
}

func equalNode(a, b model.NodeInfo) bool {
	return a.Name == b.Name && maps.Equal(a.Labels, b.Labels) && slices.Equal(a.PodCIDRs, b.PodCIDRs)
}

// topologyLabelPrefix selects the node labels the model keeps. Like kube-proxy, only topology labels
// matter; keeping the others would turn every unrelated label edit (by an operator or an autoscaler)
// into "every service changed".
const topologyLabelPrefix = "topology.kubernetes.io/"

// nodeInfoFrom builds NodeInfo from the Node object's fields. Bad pod CIDRs are skipped (and
// reported): the node is one object, and a bad CIDR must not hide its zone label.
func nodeInfoFrom(name string, labels map[string]string, podCIDRs []string) (model.NodeInfo, []rejection) {
	n := model.NodeInfo{Name: name}
	for k, v := range labels {
		if strings.HasPrefix(k, topologyLabelPrefix) {
			if n.Labels == nil {
				n.Labels = map[string]string{}
			}
			n.Labels[k] = v
		}
	}
	var rejects []rejection
	for _, s := range podCIDRs {
		p, err := parsePrefix(s)
		if err != nil {
			rejects = append(rejects, rejection{Kind: "node", Object: name, Part: "podCIDR", Reason: reasonInvalidIP, Detail: s})
			continue
		}
		n.PodCIDRs = append(n.PodCIDRs, p)
	}
	return n, rejects
}
