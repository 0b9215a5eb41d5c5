package watcher

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"

	"github.com/switchyard/switchyard/proxier/model"
)

// TestSnapshotIncrementalEqualsRebuilt drives a tracker through random service and slice changes
// (ports renamed, protocols switched, services and slices deleted and recreated, changes reverted)
// and holds every incrementally built snapshot to one rebuilt from the whole model. It also checks
// that publishing never alters a snapshot handed out before.
func TestSnapshotIncrementalEqualsRebuilt(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tr := newTracker("node-a")
	var handedOut []*model.Snapshot
	var copies []map[model.ServicePortName][]model.Endpoint
	for round := 0; round < 300; round++ {
		for op := rng.IntN(4); op >= 0; op-- {
			i := rng.IntN(8)
			name := fmt.Sprintf("svc-%d", i)
			key := model.ServiceKey{Namespace: "ns", Name: name}
			switch rng.IntN(4) {
			case 0: // a service with one or two ports, which may change name and protocol
				ports := []v1.ServicePort{{Name: "http", Protocol: v1.ProtocolTCP, Port: 80}}
				if rng.IntN(2) == 0 {
					ports = append(ports, v1.ServicePort{Name: []string{"dns", "alt"}[rng.IntN(2)],
						Protocol: []v1.Protocol{v1.ProtocolUDP, v1.ProtocolTCP}[rng.IntN(2)], Port: 53})
				}
				tr.setService(key, mustService(t, svc("ns", name, fmt.Sprintf("10.96.0.%d", 10+i), func(s *v1.Service) { s.Spec.Ports = ports })))
			case 1:
				tr.setService(key, nil)
			case 2: // a slice with endpoints for some of the port names
				ref := sliceRef{"ns", fmt.Sprintf("%s-%d", name, rng.IntN(2))}
				eps := []discovery.Endpoint{ep(fmt.Sprintf("10.244.%d.%d", i, 1+rng.IntN(3)), "node-a")}
				k, info := mustSlice(t, slice("ns", ref.Name, name, eps, func(es *discovery.EndpointSlice) {
					es.Ports = []discovery.EndpointPort{
						{Name: ptr("http"), Protocol: ptr(v1.ProtocolTCP), Port: ptr(int32(8080))},
						{Name: ptr([]string{"dns", "alt"}[rng.IntN(2)]), Protocol: ptr(v1.ProtocolUDP), Port: ptr(int32(5353))},
					}
				}))
				tr.setSlice(ref, k, info, time.Time{})
			case 3:
				tr.setSlice(sliceRef{"ns", fmt.Sprintf("%s-%d", name, rng.IntN(2))}, key, nil, time.Time{})
			}
		}
		snap, _ := tr.snapshot(rng.IntN(5) == 0)
		services, endpoints := tr.buildView()
		if !reflect.DeepEqual(snap.Services, services) || !reflect.DeepEqual(snap.Endpoints, endpoints) {
			t.Fatalf("round %d: incremental snapshot differs from a rebuilt one:\nservices %v\nwant     %v\nendpoints %v\nwant      %v",
				round, snap.Services, services, snap.Endpoints, endpoints)
		}
		handedOut = append(handedOut, snap)
		copies = append(copies, maps.Clone(snap.Endpoints))
	}
	for i, s := range handedOut {
		if !reflect.DeepEqual(s.Endpoints, copies[i]) {
			t.Fatalf("snapshot %d was changed after it was handed out", i)
		}
	}
}
