package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/switchyard/switchyard/proxier/iptables"
	"github.com/switchyard/switchyard/proxier/model"
)

// runCheck is `switchyard explain --check`: it diffs the rules the daemon's model makes it write
// (its /debug/rules) against the live tables, over Switchyard's own chains and the jumps into
// them, and prints one "missing:" or "unexpected:" line per difference. Drift is an error (a
// non-zero exit). The daemon programs IPv4; so does the check.
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
	if mode != "iptables" {
		return errors.New("explain --check: only iptables mode's rules can be checked so far; IPVS mode's cannot")
	}
	expected, err := src.fetchExpectedRules()
	if err != nil {
		return fmt.Errorf("explain --check: the daemon's expected rules: %w", err)
	}
	drift, err := iptables.FindDrift(expected, saved)
	if err != nil {
		return fmt.Errorf("explain --check: %w", err)
	}
	for _, l := range drift.Missing {
		fmt.Fprintf(stdout, "missing:    %s\n", l)
	}
	for _, l := range drift.Unexpected {
		fmt.Fprintf(stdout, "unexpected: %s\n", l)
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
	if drift.None() {
		fmt.Fprintln(stdout, "no drift: the live rules are exactly what the model writes")
		return nil
	}
	return fmt.Errorf("explain --check: %d rules missing and %d unexpected", len(drift.Missing), len(drift.Unexpected))
}
