package main

import (
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/switchyard/switchyard/proxier/explain"
	"github.com/switchyard/switchyard/proxier/iptables"
	"github.com/switchyard/switchyard/proxier/model"
)

// The walkers, one per mode, and the report's writers.

// walk explains pkt with the walker of live.Mode.
func walk(live *explain.Live, pkt explain.Packet) (*explain.Report, error) {
	switch live.Mode {
	case "iptables":
		return iptables.Explain(live, pkt)
	}
	return nil, fmt.Errorf("explaining %s mode is not built yet", live.Mode)
}

// hostIPVS reads IPVS mode's live state on this node.
func hostIPVS(model.IPFamily) ([]explain.VirtualServer, string, error) {
	return nil, "", errors.New("reading IPVS mode's state is not built yet")
}

// writeExplainReport writes rep as --output asks.
func writeExplainReport(w io.Writer, rep *explain.Report, format string) error {
	if format == "json" {
		return explain.WriteJSON(w, rep)
	}
	return explain.WriteText(w, rep)
}

// addNotes adds what the gathering could not read to the report's notes.
func addNotes(rep *explain.Report, notes []string) {
	for _, n := range notes {
		if !slices.Contains(rep.Notes, n) {
			rep.Notes = append(rep.Notes, n)
		}
	}
}
