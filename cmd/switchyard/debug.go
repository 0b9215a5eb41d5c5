package main

import (
	"encoding/json"
	"net/http"
	"net/netip"

	"k8s.io/klog/v2"

	"github.com/switchyard/switchyard/internal/syncloop"
	"github.com/switchyard/switchyard/proxier/iptables"
	"github.com/switchyard/switchyard/proxier/ipvs"
	"github.com/switchyard/switchyard/proxier/model"
)

// debugSource is what the /debug endpoints read: the sync loop's view of the model.
type debugSource interface {
	DebugModel() model.DebugModel
	DebugState() (*model.Snapshot, []model.DebugSync)
}

var _ debugSource = (*syncloop.Loop)(nil)

// rulesExpecter is a backend that can say which rules a snapshot makes it write (iptables mode).
type rulesExpecter interface {
	ExpectedRules(snap *model.Snapshot) ([]byte, error)
}

var _ rulesExpecter = (*iptables.Proxier)(nil)

// stateExpecter is a backend that can say what state a snapshot makes it leave in the kernel (IPVS
// mode: virtual servers, addresses, ipsets and rules).
type stateExpecter interface {
	ExpectedState(snap *model.Snapshot) (*ipvs.ExpectedState, error)
}

var _ stateExpecter = (*ipvs.Proxier)(nil)

// Paths of the debug endpoints on the metrics address. `switchyard explain` reads them.
const (
	debugModelPath = "/debug/model"
	debugRulesPath = "/debug/rules"
)

// addDebugHandlers serves, on mux, /debug/model (what Switchyard believes, as JSON; with
// ?dst=ADDR:PORT&protocol=P only the service ports a packet to dst is addressed to, with
// ?services=none none) and, for a
// backend that can say what it writes, /debug/rules (what a sync of the current model leaves in
// the kernel: in iptables mode the rules, as iptables-save prints them; in IPVS mode its
// ipvs.ExpectedState, as JSON), which `explain --check` diffs with the live state.
// Both build their answer on request, from the snapshot last handed to the backends.
func addDebugHandlers(mux *http.ServeMux, src debugSource, backend model.Backend) {
	mux.HandleFunc(debugModelPath, func(w http.ResponseWriter, r *http.Request) {
		m := src.DebugModel()
		// ?dst=ADDR:PORT&protocol=tcp keeps only the service ports a packet to dst is addressed
		// to: what `switchyard explain` reads, where the whole model of 10k services is 15 MB.
		if q := r.URL.Query(); q.Has("dst") {
			dst, err := netip.ParseAddrPort(q.Get("dst"))
			proto := q.Get("protocol")
			if proto == "" {
				proto = "tcp"
			}
			if err != nil {
				http.Error(w, "dst: "+err.Error(), http.StatusBadRequest)
				return
			}
			m = m.Addressed(dst, proto)
		}
		// ?services=none: the node and the syncs only, for explain --check's notes.
		if r.URL.Query().Get("services") == "none" {
			m.Services = []model.DebugServicePort{}
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(m); err != nil {
			klog.V(2).InfoS("Could not write /debug/model", "err", err)
		}
	})
	mux.HandleFunc(debugRulesPath, func(w http.ResponseWriter, _ *http.Request) {
		rulesExp, rulesOK := backend.(rulesExpecter)
		stateExp, stateOK := backend.(stateExpecter)
		if !rulesOK && !stateOK {
			http.Error(w, "this proxy mode does not serve its expected rules", http.StatusNotImplemented)
			return
		}
		snap, _ := src.DebugState()
		if snap == nil {
			http.Error(w, "no sync yet: the model is not complete", http.StatusServiceUnavailable)
			return
		}
		if stateOK {
			state, err := stateExp.ExpectedState(snap)
			if err != nil {
				http.Error(w, "compute the expected state: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			if err := json.NewEncoder(w).Encode(state); err != nil {
				klog.V(2).InfoS("Could not write /debug/rules", "err", err)
			}
			return
		}
		rules, err := rulesExp.ExpectedRules(snap)
		if err != nil {
			http.Error(w, "render the expected rules: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write(rules)
	})
}
