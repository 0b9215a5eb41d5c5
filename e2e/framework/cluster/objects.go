package cluster

import (
	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// The Service and EndpointSlice objects that tests, the demo and the benchmark tools create all
// point at the echo server every pod runs (package echo), on its port 8080.

// EchoPort is the port every pod's echo server answers on, over TCP and UDP.
const EchoPort = 8080

// EchoService is Service ns/name of type typ ("" leaves the API server's default, ClusterIP) with
// one port, "http": TCP 80 to the echo server's port. selector picks its pods; a nil selector makes
// a service whose endpoints are published by hand (EchoEndpointSlice).
func EchoService(ns, name string, typ v1.ServiceType, selector map[string]string) *v1.Service {
	return &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: v1.ServiceSpec{
			Type:     typ,
			Selector: selector,
			Ports:    []v1.ServicePort{{Name: "http", Protocol: v1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(EchoPort)}},
		},
	}
}

// Endpoint is one endpoint of a hand-made EndpointSlice: its address and the node it is on ("" for
// none).
type Endpoint struct{ IP, Node string }

// EchoEndpointSlice is EndpointSlice ns/name of the selector-less service, with the port "http" of
// EchoService (TCP to the echo server's port) and one ready, serving, not terminating endpoint per
// entry of endpoints. managedBy must not be the EndpointSlice controller's value, so that the
// controller and the mirroring controller leave the slice alone.
func EchoEndpointSlice(ns, name, service, managedBy string, endpoints ...Endpoint) *discoveryv1.EndpointSlice {
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{
			discoveryv1.LabelServiceName: service,
			discoveryv1.LabelManagedBy:   managedBy,
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Protocol: ptr.To(v1.ProtocolTCP), Port: ptr.To[int32](EchoPort)}},
	}
	for _, ep := range endpoints {
		e := discoveryv1.Endpoint{
			Addresses:  []string{ep.IP},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)},
		}
		if ep.Node != "" {
			e.NodeName = ptr.To(ep.Node)
		}
		slice.Endpoints = append(slice.Endpoints, e)
	}
	return slice
}
