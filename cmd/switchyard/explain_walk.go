package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/switchyard/switchyard/proxier/explain"
	"github.com/switchyard/switchyard/proxier/model"
)

// The walkers and the report's writers, one place per mode. (Placeholders until the iptables and
// IPVS walkers land.)

// walk explains pkt with the walker of live.Mode.
func walk(live *explain.Live, pkt explain.Packet) (*explain.Report, error) {
	return nil, fmt.Errorf("explaining %s mode is not built yet", live.Mode)
}

// hostIPVS reads IPVS mode's live state on this node.
func hostIPVS(model.IPFamily) ([]explain.VirtualServer, string, error) {
	return nil, "", errors.New("reading IPVS mode's state is not built yet")
}

// writeExplainReport writes rep as --output asks.
func writeExplainReport(w io.Writer, rep *explain.Report, format string) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// addNotes adds the gathering's notes to the report.
func addNotes(rep *explain.Report, notes []string) {}
