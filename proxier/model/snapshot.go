package model

import "sort"

// Snapshot is the full desired state handed to a backend for one sync. Maps and the values they
// reference are read-only for the backend.
type Snapshot struct {
	Services  map[ServicePortName]*ServicePort
	Endpoints map[ServicePortName][]Endpoint
	Node      NodeInfo

	// Changed names every service whose ports or endpoints differ from the previous snapshot handed to
	// the same backend, including services that were deleted. A backend that renders incrementally
	// only needs to rewrite these; all others are as it last applied them.
	Changed map[ServiceKey]struct{}
	// Full is set when the backend must not trust what it applied before: the first sync, the periodic
	// resync, or a retry after a failure. Changed is then advisory.
	Full bool
}

// NewSnapshot returns an empty snapshot with its maps allocated.
func NewSnapshot() *Snapshot {
	return &Snapshot{
		Services:  map[ServicePortName]*ServicePort{},
		Endpoints: map[ServicePortName][]Endpoint{},
		Changed:   map[ServiceKey]struct{}{},
	}
}

// SortedServiceNames returns the snapshot's service port names in a stable order, so that rendered
// output is deterministic and golden files are stable.
func (s *Snapshot) SortedServiceNames() []ServicePortName {
	names := make([]ServicePortName, 0, len(s.Services))
	for n := range s.Services {
		names = append(names, n)
	}
	SortServicePortNames(names)
	return names
}

// SortServicePortNames sorts by namespace, name, then port name.
func SortServicePortNames(names []ServicePortName) {
	sort.Slice(names, func(i, j int) bool { return lessName(names[i], names[j]) })
}

func lessName(a, b ServicePortName) bool {
	if a.Namespace != b.Namespace {
		return a.Namespace < b.Namespace
	}
	if a.Name != b.Name {
		return a.Name < b.Name
	}
	return a.Port < b.Port
}

// PortsOf returns the port names the snapshot holds for a service, sorted.
func (s *Snapshot) PortsOf(key ServiceKey) []ServicePortName {
	var out []ServicePortName
	for n := range s.Services {
		if n.ServiceKey == key {
			out = append(out, n)
		}
	}
	SortServicePortNames(out)
	return out
}
