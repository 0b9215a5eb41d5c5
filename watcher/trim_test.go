package watcher

import (
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestInformerStoresTrimmedObjects: the informers keep Services and EndpointSlices without the
// parts the proxy never reads, and the model built from them is unaffected.
func TestInformerStoresTrimmedObjects(t *testing.T) {
	managed := []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply,
		FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:spec":{}}`)}}}
	trigger := time.Now().Add(time.Second).UTC().Format(time.RFC3339Nano)
	h := newHarness(t,
		svc("ns", "web", "10.96.0.10", func(s *v1.Service) {
			s.ManagedFields = managed
			s.Annotations = map[string]string{v1.LastAppliedConfigAnnotation: `{"big":"json"}`, v1.AnnotationTopologyMode: "Auto"}
			s.Spec.Type = v1.ServiceTypeLoadBalancer
			s.Spec.LoadBalancerSourceRanges = []string{"10.0.0.0/8"}
			s.Spec.Ports[0].NodePort = 30080
		}),
		slice("ns", "web-1", "web", []discovery.Endpoint{ep("10.244.1.5", testNode)}, func(es *discovery.EndpointSlice) {
			es.ManagedFields = managed
			es.Annotations = map[string]string{v1.EndpointsLastChangeTriggerTime: trigger}
			es.Endpoints[0].TargetRef = &v1.ObjectReference{Kind: "Pod", Namespace: "ns", Name: "web-abc", UID: "1234"}
		}))
	h.start()

	for _, obj := range h.w.factory.Core().V1().Services().Informer().GetStore().List() {
		s := obj.(*v1.Service)
		if s.ManagedFields != nil || s.Annotations[v1.LastAppliedConfigAnnotation] != "" {
			t.Errorf("stored Service keeps managedFields or last-applied: %+v %v", s.ManagedFields, s.Annotations)
		}
		if s.Annotations[v1.AnnotationTopologyMode] != "Auto" {
			t.Errorf("trimming dropped an annotation other than last-applied: %v", s.Annotations)
		}
	}
	for _, obj := range h.w.factory.Discovery().V1().EndpointSlices().Informer().GetStore().List() {
		es := obj.(*discovery.EndpointSlice)
		if es.ManagedFields != nil || es.Endpoints[0].TargetRef != nil {
			t.Errorf("stored EndpointSlice keeps managedFields or targetRef: %+v", es)
		}
		if es.Annotations[v1.EndpointsLastChangeTriggerTime] != trigger {
			t.Errorf("trimming dropped the trigger time: %v", es.Annotations)
		}
	}
	snap, info := h.w.Snapshot(true)
	name := spn("ns", "web", "http")
	if sp := snap.Services[name]; sp == nil || len(sp.LoadBalancerSourceRanges) != 1 {
		t.Errorf("service after trimming: %+v", snap.Services[name])
	}
	if eps := snap.Endpoints[name]; len(eps) != 1 || eps[0].IP.String() != "10.244.1.5" {
		t.Errorf("endpoints after trimming: %+v", eps)
	}
	if len(info.TriggerTimes) != 1 {
		t.Errorf("trigger times %v, want the slice's one", info.TriggerTimes)
	}
}
