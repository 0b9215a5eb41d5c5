package main

import (
	"fmt"
	"io"

	"github.com/switchyard/switchyard/proxier/explain"
	"github.com/switchyard/switchyard/proxier/iptables"
	"github.com/switchyard/switchyard/proxier/ipvs"
)

// The walkers, one per mode, and the report's writers. (The readers of the node are in
// explain_host.go.)

// walk explains pkt with the walker of live.Mode.
func walk(live *explain.Live, pkt explain.Packet) (*explain.Report, error) {
	switch live.Mode {
	case "iptables":
		return iptables.Explain(live, pkt)
	case "ipvs":
		return ipvs.Explain(live, pkt)
	}
	return nil, fmt.Errorf("explaining %s mode is not built yet", live.Mode)
}

// writeExplainReport writes rep as --output asks.
func writeExplainReport(w io.Writer, rep *explain.Report, format string) error {
	if format == "json" {
		return explain.WriteJSON(w, rep)
	}
	return explain.WriteText(w, rep)
}
