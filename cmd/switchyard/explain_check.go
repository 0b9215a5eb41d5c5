package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"slices"

	"github.com/switchyard/switchyard/proxier/iptables"
	"github.com/switchyard/switchyard/proxier/ipvs"
	"github.com/switchyard/switchyard/proxier/model"
)

// runCheck is `switchyard explain --check`: it diffs what the daemon's model makes it write (its
// /debug/rules) against the live state and prints one "missing:" or "unexpected:" line per
// difference. In iptables mode that is the rules of Switchyard's own chains and the jumps into
// them; in IPVS mode also its virtual servers with their real servers and weights, the addresses
// on kube-ipvs0 and its ipsets' members. Drift is an error (a non-zero exit). The daemon programs
// IPv4; so does the check.
func runCheck(src liveSources, f *explainFlags, stdout io.Writer) error {
	family := model.IPv4
	saved, err := src.saveIptables(family)
	if err != nil {
		return fmt.Errorf("explain --check: read the %s iptables rules: %w", family, err)
	}
	mode, err := pickMode(f.mode, saved, src.hasIPVSDevice)
	if err != nil {
		return fmt.Errorf("explain --check: %w", err)
	}
	expected, err := src.fetchExpectedRules()
	if err != nil {
		return fmt.Errorf("explain --check: the daemon's expected rules: %w", err)
	}
	var missing, unexpected, draining []string
	switch mode {
	case "iptables":
		d, err := iptables.FindDrift(expected, saved)
		if err != nil {
			return fmt.Errorf("explain --check: %w", err)
		}
		missing, unexpected = lineStrings(d.Missing), lineStrings(d.Unexpected)
	case "ipvs":
		d, err := ipvsDrift(src, family, expected, saved)
		if err != nil {
			return fmt.Errorf("explain --check: %w", err)
		}
		missing, unexpected, draining = d.Missing, d.Unexpected, d.Draining
	default:
		return fmt.Errorf("explain --check: unknown proxy mode %q", mode)
	}
	for _, l := range missing {
		fmt.Fprintf(stdout, "missing:    %s\n", l)
	}
	for _, l := range unexpected {
		fmt.Fprintf(stdout, "unexpected: %s\n", l)
	}
	for _, l := range draining {
		fmt.Fprintf(stdout, "note: draining, not drift: %s (the model dropped it; it goes once its connections end)\n", l)
	}
	// Drift right after a model change, or after a failed sync, is the daemon's own lag, not
	// someone else's edit: say so.
	if m, err := src.fetchModel(); err == nil {
		if s, ok := m.Sync(family); ok {
			switch {
			case s.LastError != "":
				fmt.Fprintf(stdout, "note: the daemon's last sync failed (%s); the tables hold the last successful one, of %s\n", s.LastError, s.LastSuccess.Format("15:04:05"))
			case s.ModelChangedAt.After(s.LastSuccess):
				fmt.Fprintf(stdout, "note: the model changed at %s, after the last successful sync; a sync may be under way\n", s.ModelChangedAt.Format("15:04:05"))
			}
		}
	}
	if len(missing) == 0 && len(unexpected) == 0 {
		if mode == "ipvs" {
			fmt.Fprintln(stdout, "no drift: the live virtual servers, addresses, sets and rules are exactly what the model writes")
			return nil
		}
		fmt.Fprintln(stdout, "no drift: the live rules are exactly what the model writes")
		return nil
	}
	if mode == "ipvs" {
		return fmt.Errorf("explain --check: %d missing and %d unexpected", len(missing), len(unexpected))
	}
	return fmt.Errorf("explain --check: %d rules missing and %d unexpected", len(missing), len(unexpected))
}

func lineStrings(lines []iptables.DriftLine) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = l.String()
	}
	return out
}

// ipvsDrift compares IPVS mode's expected state (/debug/rules' JSON) with the live one: the
// kernel's virtual servers and the backend's sets (src.ipvs), the addresses on kube-ipvs0
// (src.localAddrs) and the rules (saved).
func ipvsDrift(src liveSources, family model.IPFamily, expected, saved []byte) (ipvs.Drift, error) {
	var exp ipvs.ExpectedState
	if err := json.Unmarshal(expected, &exp); err != nil {
		return ipvs.Drift{}, fmt.Errorf("the daemon's expected state is not IPVS mode's (is it running in IPVS mode?): %w", err)
	}
	vss, sets, err := src.ipvs(family)
	if err != nil {
		return ipvs.Drift{}, fmt.Errorf("read IPVS mode's state: %w", err)
	}
	addrs, err := src.localAddrs(family)
	if err != nil {
		return ipvs.Drift{}, fmt.Errorf("list the addresses on %s: %w", ipvs.DummyDevice, err)
	}
	live := ipvs.LiveState{VirtualServers: vss, IPSetSave: sets, IptablesSave: saved}
	for a, dev := range addrs {
		if dev == ipvs.DummyDevice {
			live.Bound = append(live.Bound, a)
		}
	}
	slices.SortFunc(live.Bound, netip.Addr.Compare)
	return ipvs.FindDrift(&exp, live)
}
