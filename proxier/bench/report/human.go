package report

import (
	"fmt"
	"strconv"

	"github.com/switchyard/switchyard/proxier/bench"
)

// Column headers of the terminal and Markdown tables.
const (
	colBackend  = "backend"
	colVariant  = "variant"
	notMeasured = "n/a"
	notApplies  = "-"
)

var (
	baseColumns  = []string{colBackend, "services", "rules", "chains", "IPVS VS", "IPVS RS", "ipset entries", "render", "render alloc"}
	applyColumns = []string{colVariant, "apply (full)", "incremental sync", "connect first", "connect last"}
)

// humanRows lays the report out for people: one row per Result in human units, the apply columns
// only when some Result went through --apply (or says why it could not), and one note per distinct
// reason an apply figure is missing.
func humanRows(rep *bench.Report) (header []string, rows [][]string, notes []string) {
	withApply := false
	for _, r := range rep.Results {
		if r.Apply != nil || r.ApplyUnavailable != "" {
			withApply = true
			break
		}
	}
	header = append(header, baseColumns...)
	if withApply {
		header = append(header, applyColumns...)
	}
	seenNote := map[string]bool{}
	for i := range rep.Results {
		r := &rep.Results[i]
		row := []string{
			r.Backend, thousands(r.Services), thousands(r.RulesTotal()), thousands(r.ChainsTotal()),
			ipvsOnly(r, r.VirtualServers), ipvsOnly(r, r.RealServers), ipvsOnly(r, r.IpsetEntries),
			Seconds(r.RenderSeconds), megabytes(r.RenderAllocBytes),
		}
		if withApply {
			if a := r.Apply; a != nil {
				row = append(row, a.Variant, Seconds(a.FullSyncSeconds), Seconds(a.IncrementalSyncSeconds),
					micros(a.FirstService.MedianSeconds), micros(a.LastService.MedianSeconds))
			} else {
				row = append(row, notMeasured, notMeasured, notMeasured, notMeasured, notMeasured)
				if r.ApplyUnavailable != "" {
					note := fmt.Sprintf("%s apply: %s: %s", r.Backend, notMeasured, r.ApplyUnavailable)
					if !seenNote[note] {
						seenNote[note] = true
						notes = append(notes, note)
					}
				}
			}
		}
		rows = append(rows, row)
	}
	return header, rows, notes
}

// ipvsOnly shows an IPVS-only count, or "-" for a backend that has no such objects.
func ipvsOnly(r *bench.Result, n int) string {
	if r.Backend != bench.BackendIPVS {
		return notApplies
	}
	return thousands(n)
}

// thousands writes n with comma thousands separators: 17028 is "17,028".
func thousands(n int) string {
	s := strconv.Itoa(n)
	neg := ""
	if n < 0 {
		neg, s = "-", s[1:]
	}
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return neg + string(out)
}

// Seconds shows a wall time with about three significant digits: milliseconds below a second,
// seconds above.
func Seconds(s float64) string {
	switch {
	case s < 0.01:
		return fmt.Sprintf("%.2f ms", s*1e3)
	case s < 0.1:
		return fmt.Sprintf("%.1f ms", s*1e3)
	case s < 1:
		return fmt.Sprintf("%.0f ms", s*1e3)
	case s < 10:
		return fmt.Sprintf("%.2f s", s)
	case s < 100:
		return fmt.Sprintf("%.1f s", s)
	default:
		return fmt.Sprintf("%.0f s", s)
	}
}

// micros shows a connect latency in microseconds, the unit first-packet costs are read in.
func micros(s float64) string {
	if us := s * 1e6; us < 10 {
		return fmt.Sprintf("%.1f µs", us)
	}
	return fmt.Sprintf("%.0f µs", s*1e6)
}

// megabytes shows an allocation size in MB (10^6 bytes).
func megabytes(b uint64) string {
	mb := float64(b) / 1e6
	if mb < 10 {
		return fmt.Sprintf("%.2f MB", mb)
	}
	return fmt.Sprintf("%.1f MB", mb)
}
