package conntrack

import (
	"errors"
	"maps"
	"net/netip"
	"time"

	"k8s.io/klog/v2"

	"github.com/switchyard/switchyard/proxier/metrics"
	"github.com/switchyard/switchyard/proxier/model"
)

// addrSet is a set of IP:port pairs.
type addrSet = map[netip.AddrPort]struct{}

// desired is what the model justifies in the conntrack table of one family: for every address and
// port a UDP service is reached at, the serving endpoints its entries may be DNATed to, and the same
// for every UDP node port that has a serving endpoint.
type desired struct {
	frontends map[netip.AddrPort]addrSet
	nodePorts map[uint16]addrSet
	udp       map[model.ServiceKey]struct{} // the services with a UDP port
}

// desiredOf reads snap the way kube-proxy's reconciler reads its service and endpoint maps:
//   - only UDP services count: a TCP or SCTP entry is never deleted (kube-proxy concluded that only
//     UDP needs it, and its v1.37 reconciler skips every other protocol);
//   - an endpoint counts when it is serving, whatever its readiness, terminating state, node, zone or
//     the service's traffic policies: a change of those must not break flows that still have a
//     working backend, as it does not break TCP connections;
//   - a service with no serving endpoint still counts, with an empty set, so the entries DNATed to its
//     last endpoints go (the regression kube-proxy fixed in kubernetes#139628): the REJECT rule for
//     such a service never sees packets of an entry that exists already;
//   - a node port counts only while its service has a serving endpoint: node port entries are
//     matched on the port alone, so an empty set would delete unrelated traffic to that port.
func desiredOf(snap *model.Snapshot, family model.IPFamily) *desired {
	d := &desired{frontends: make(map[netip.AddrPort]addrSet, len(snap.Services)), nodePorts: map[uint16]addrSet{},
		udp: make(map[model.ServiceKey]struct{}, len(snap.Services))}
	for name, svc := range snap.Services {
		if svc.Protocol != model.UDP {
			continue
		}
		d.udp[name.ServiceKey] = struct{}{}
		eps := snap.Endpoints[name]
		serving := make(addrSet, len(eps))
		for _, ep := range eps {
			if ep.Serving && family.Of(ep.IP) {
				serving[ep.AddrPort()] = struct{}{}
			}
		}
		port := uint16(svc.Port)
		for _, list := range [][]netip.Addr{svc.ClusterIPs, svc.ExternalIPs, svc.LoadBalancerIPs} {
			for _, a := range model.AddrsFor(family, list) {
				d.addFrontend(netip.AddrPortFrom(a, port), serving)
			}
		}
		if svc.NodePort != 0 && len(serving) > 0 {
			d.nodePorts[uint16(svc.NodePort)] = serving
		}
	}
	return d
}

// addFrontend records the endpoints of a frontend. Two services may share an external IP and
// port; then an entry to either's endpoints is justified.
func (d *desired) addFrontend(fe netip.AddrPort, serving addrSet) {
	have, ok := d.frontends[fe]
	if !ok {
		d.frontends[fe] = serving
		return
	}
	union := maps.Clone(have)
	maps.Copy(union, serving)
	d.frontends[fe] = union
}

func (d *desired) equal(o *desired) bool {
	eq := func(a, b addrSet) bool { return maps.Equal(a, b) }
	return maps.EqualFunc(d.frontends, o.frontends, eq) && maps.EqualFunc(d.nodePorts, o.nodePorts, eq)
}

// stale reports whether the model no longer justifies f. An entry to a service address is judged by
// that frontend alone; only an entry to no service address is judged by its destination port as a
// node port. (kube-proxy also checks the node ports of an entry whose service address justified it,
// so it deletes a live entry to a service whose port equals another service's node port.)
func (d *desired) stale(f Flow) bool {
	if f.Protocol != model.UDP {
		return false
	}
	if eps, ok := d.frontends[f.OrigDst]; ok {
		_, serving := eps[f.ReplySrc]
		return !serving
	}
	if eps, ok := d.nodePorts[f.OrigDst.Port()]; ok {
		_, serving := eps[f.ReplySrc]
		return !serving
	}
	return false
}

// Stale returns the flows, all of one family, that snap no longer justifies: UDP entries to a
// service address or node port that were not DNATed to one of that service's serving endpoints.
// That covers an endpoint that went away, a service scaled to zero (every entry to its addresses),
// and a service that has endpoints again after it had none (entries created meanwhile were never
// DNATed, so their reply source is the service address itself).
func Stale(snap *model.Snapshot, family model.IPFamily, flows []Flow) []Flow {
	return desiredOf(snap, family).staleOf(flows, nil, nil)
}

// staleOf applies stale to every flow, also deleting entries to the frontends of services that
// are gone and entries to retired destinations.
func (d *desired) staleOf(flows []Flow, gone addrSet, retired map[netip.AddrPort]addrSet) []Flow {
	var out []Flow
	for _, f := range flows {
		if f.Protocol != model.UDP {
			continue
		}
		_, toGone := gone[f.OrigDst]
		_, toRetired := retired[f.OrigDst][f.ReplySrc]
		if toGone || toRetired || d.stale(f) {
			out = append(out, f)
		}
	}
	return out
}

// Reconciler makes one family's conntrack table agree with the model after every sync of a backend,
// as kube-proxy's reconciler does since v1.32: it lists the table and deletes the UDP entries that
// the current services and endpoints no longer justify (see Stale).
//
// Because it compares states rather than reacting to events, a failed delete needs no bookkeeping to
// be retried: after a failure the next call reconciles again, whatever changed, and the sync loop
// calls at least once per sync period. When no UDP service changed (by snap.Changed) since a
// successful reconcile and the sync is not full, a call costs one look at the snapshot's services and
// no listing; when UDP services changed but what they justify did not, it costs no listing either.
//
// It also deletes what the model alone cannot tell: entries to the addresses of UDP services that
// were deleted since the previous call (as kube-proxy does since kubernetes#141371), and entries to
// destinations a backend dropped while their endpoints still serve (DropDestination).
type Reconciler struct {
	table  Table
	family model.IPFamily

	last      *desired                      // what the last successful reconcile enforced; nil forces the next one
	frontends map[netip.AddrPort]addrSet    // of the previous call that read the model
	udp       map[model.ServiceKey]struct{} // likewise
	gone      addrSet                       // addresses of deleted services not yet cleaned
	retired   map[netip.AddrPort]addrSet    // frontend to destinations dropped, not yet cleaned
}

// NewReconciler returns a Reconciler of table's entries of one family.
func NewReconciler(table Table, family model.IPFamily) *Reconciler {
	return &Reconciler{table: table, family: family, gone: addrSet{}, retired: map[netip.AddrPort]addrSet{}}
}

// DropDestination makes the next reconcile delete the UDP entries to frontend that were DNATed to
// dest, even while dest is a serving endpoint: the IPVS backend deletes a UDP real server at once
// (kube-proxy does too), after which those entries lead nowhere.
func (r *Reconciler) DropDestination(frontend, dest netip.AddrPort) {
	if r.retired[frontend] == nil {
		r.retired[frontend] = addrSet{}
	}
	r.retired[frontend][dest] = struct{}{}
}

// Reconcile makes the table agree with snap and returns how many entries it deleted. A failure is
// logged and returned; the next call retries. Call it after the rules of snap are in force, so that
// no entry it keeps can be recreated by the old rules.
func (r *Reconciler) Reconcile(snap *model.Snapshot) (int, error) {
	if !snap.Full && r.last != nil && len(r.retired) == 0 && !r.udpChanged(snap) {
		return 0, nil
	}
	d := desiredOf(snap, r.family)
	for fe := range r.frontends {
		if _, ok := d.frontends[fe]; !ok {
			r.gone[fe] = struct{}{}
		}
	}
	for fe := range r.gone {
		if _, ok := d.frontends[fe]; ok {
			delete(r.gone, fe)
		}
	}
	r.frontends, r.udp = d.frontends, d.udp
	if !snap.Full && r.last != nil && len(r.gone) == 0 && len(r.retired) == 0 && d.equal(r.last) {
		return 0, nil
	}

	start := time.Now()
	family := r.family.String()
	r.last = nil
	n, err := r.reconcile(d)
	metrics.ConntrackReconcileLatency.WithLabelValues(family).Observe(metrics.SinceInSeconds(start))
	metrics.ConntrackReconcileDeletedTotal.WithLabelValues(family).Add(float64(n))
	if err != nil {
		klog.ErrorS(err, "Failed to reconcile conntrack entries; retrying on the next sync", "ipFamily", family, "deleted", n)
		return n, err
	}
	r.last = d
	clear(r.gone)
	clear(r.retired)
	klog.V(4).InfoS("Reconciled conntrack entries", "ipFamily", family, "deleted", n, "elapsed", time.Since(start))
	return n, nil
}

// udpChanged reports whether snap.Changed names a service that has or had a UDP port.
func (r *Reconciler) udpChanged(snap *model.Snapshot) bool {
	if len(snap.Changed) == 0 {
		return false
	}
	for k := range snap.Changed {
		if _, ok := r.udp[k]; ok {
			return true
		}
	}
	for name, svc := range snap.Services {
		if _, ok := snap.Changed[name.ServiceKey]; ok && svc.Protocol == model.UDP {
			return true
		}
	}
	return false
}

func (r *Reconciler) reconcile(d *desired) (int, error) {
	flows, listErr := r.table.List(r.family)
	if listErr != nil && !errors.Is(listErr, ErrPartial) {
		return 0, listErr
	}
	// A partial listing still lets this pass delete what it saw; the error makes the next pass
	// look again.
	n, err := r.table.Delete(r.family, d.staleOf(flows, r.gone, r.retired))
	return n, errors.Join(listErr, err)
}
