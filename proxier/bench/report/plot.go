package report

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/switchyard/switchyard/proxier/bench"
)

// Plot size: three panels stacked in a portrait page, 800x1200 px for PNG.
const (
	plotWidth  = 8 * vg.Inch
	plotHeight = 12 * vg.Inch
	plotDPI    = 100
)

// Panel titles. Tests look for them; a panel without data appends why to its title.
const (
	titleRules   = "Rules and kernel entries"
	titleApply   = "Apply time (full sync)"
	titleConnect = "First-packet connect latency (median)"
)

// spanForLog is how many times the largest value must exceed the smallest before an axis goes
// logarithmic: below it a linear axis reads more easily.
const spanForLog = 50

// Plot draws rep into path, an .svg or .png file: rules and kernel entries, apply time and
// first-packet connect latency against service count, one line per backend, in three stacked panels.
func Plot(rep *bench.Report, path string) error {
	ext := strings.ToLower(filepath.Ext(path))
	if ext != ".svg" && ext != ".png" {
		return fmt.Errorf("plot bench report to %q: unsupported file type %q (use .svg or .png)", path, ext)
	}
	if rep == nil || len(rep.Results) == 0 {
		return fmt.Errorf("plot bench report to %q: %w", path, errNoResults)
	}
	panels, err := buildPanels(rep)
	if err != nil {
		return fmt.Errorf("plot bench report to %q: %w", path, err)
	}

	var canvas interface {
		vg.CanvasSizer
		io.WriterTo
	}
	if ext == ".svg" {
		canvas = vgsvg.New(plotWidth, plotHeight)
	} else {
		canvas = vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(plotWidth, plotHeight), vgimg.UseDPI(plotDPI))}
	}
	rows := make([][]*plot.Plot, len(panels))
	for i, p := range panels {
		rows[i] = []*plot.Plot{p}
	}
	tiles := draw.Tiles{Rows: len(panels), Cols: 1, PadTop: vg.Points(10), PadBottom: vg.Points(10),
		PadLeft: vg.Points(10), PadRight: vg.Points(10), PadY: vg.Points(20)}
	dc := draw.New(canvas)
	canvases := plot.Align(rows, tiles, dc)
	for i, p := range panels {
		p.Draw(canvases[i][0])
	}

	if err := writeFile(path, canvas); err != nil {
		return fmt.Errorf("plot bench report to %q: %w", path, err)
	}
	return nil
}

func writeFile(path string, w io.WriterTo) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	_, err = w.WriteTo(f)
	return err
}

// series is one line of a panel: a label and its points by service count.
type series struct {
	label  string
	points plotter.XYs
}

// seriesSet collects points into labelled lines, keeping labels in first-seen order so colours
// and legend order follow the report's order.
type seriesSet struct {
	order []string
	byKey map[string]*series
}

func (s *seriesSet) add(label string, x, y float64) {
	if s.byKey == nil {
		s.byKey = map[string]*series{}
	}
	sr, ok := s.byKey[label]
	if !ok {
		sr = &series{label: label}
		s.byKey[label] = sr
		s.order = append(s.order, label)
	}
	sr.points = append(sr.points, plotter.XY{X: x, Y: y})
}

func (s *seriesSet) lines() []*series {
	out := make([]*series, 0, len(s.order))
	for _, l := range s.order {
		sr := s.byKey[l]
		sort.SliceStable(sr.points, func(i, j int) bool { return sr.points[i].X < sr.points[j].X })
		out = append(out, sr)
	}
	return out
}

func buildPanels(rep *bench.Report) ([]*plot.Plot, error) {
	var rules, apply, connect seriesSet
	variants := map[string]bool{}
	var unavailable bool
	for _, r := range rep.Results {
		if r.Apply != nil {
			variants[r.Apply.Variant] = true
		}
		if r.ApplyUnavailable != "" {
			unavailable = true
		}
	}
	for _, r := range rep.Results {
		x := float64(r.Services)
		if r.Backend == bench.BackendIPVS {
			rules.add("ipvs iptables rules", x, float64(r.RulesTotal()))
			rules.add("ipvs kernel entries", x, float64(r.KernelObjects()))
		} else {
			rules.add(r.Backend+" rules", x, float64(r.RulesTotal()))
		}
		a := r.Apply
		if a == nil {
			continue
		}
		// Only name the variant when the report mixes them; otherwise it is noise in the legend.
		label := r.Backend
		if len(variants) > 1 {
			label += " (" + a.Variant + ")"
		}
		apply.add(label, x, a.FullSyncSeconds)
		connect.add(label+" first service", x, a.FirstService.MedianSeconds*1e6)
		connect.add(label+" last service", x, a.LastService.MedianSeconds*1e6)
	}

	noApply := "no data: bench ran without --apply"
	if unavailable {
		noApply = "no data: apply unavailable (see the table's notes)"
	}
	sizes := serviceRange(rep)
	var panels []*plot.Plot
	for _, spec := range []struct {
		title, yLabel string
		set           *seriesSet
	}{
		{titleRules, "rules / entries", &rules},
		{titleApply, "seconds", &apply},
		{titleConnect, "microseconds", &connect},
	} {
		p, err := newPanel(spec.title, spec.yLabel, spec.set.lines(), sizes, noApply)
		if err != nil {
			return nil, fmt.Errorf("panel %q: %w", spec.title, err)
		}
		panels = append(panels, p)
	}
	return panels, nil
}

// serviceRange is the smallest and largest service count in the report, so empty panels share
// the x axis of the others.
func serviceRange(rep *bench.Report) [2]float64 {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, r := range rep.Results {
		lo = math.Min(lo, float64(r.Services))
		hi = math.Max(hi, float64(r.Services))
	}
	return [2]float64{lo, hi}
}

func newPanel(title, yLabel string, lines []*series, sizes [2]float64, emptyWhy string) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "services"
	p.Y.Label.Text = yLabel
	p.Legend.Top = true
	p.Legend.Left = true
	p.Legend.YOffs = -vg.Points(6) // clear of the title
	p.Add(plotter.NewGrid())

	var xs, ys []float64
	for _, l := range lines {
		for _, pt := range l.points {
			xs = append(xs, pt.X)
			ys = append(ys, pt.Y)
		}
	}
	if len(xs) == 0 {
		p.Title.Text = title + ": " + emptyWhy
		p.X.Min, p.X.Max = sizes[0], sizes[1]
		p.Y.Min, p.Y.Max = 0, 1
		if sizes[0] == sizes[1] {
			p.X.Min, p.X.Max = sizes[0]-1, sizes[1]+1
		}
		if logWorthy(sizes[:]) {
			p.X.Scale = plot.LogScale{}
			p.X.Tick.Marker = readableLogTicks{}
		}
		return p, nil
	}
	for i, l := range lines {
		line, points, err := plotter.NewLinePoints(l.points)
		if err != nil {
			return nil, fmt.Errorf("line %q: %w", l.label, err)
		}
		line.Color = plotutil.Color(i)
		line.Dashes = plotutil.Dashes(i)
		points.Color = plotutil.Color(i)
		points.Shape = plotutil.Shape(i)
		p.Add(line, points)
		p.Legend.Add(l.label, line, points)
	}
	// The x axis follows every size in the report, not this panel's points, so the three panels
	// line up.
	if logWorthy(sizes[:]) {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = readableLogTicks{}
	}
	lo, hi := minMax(ys)
	// The legend sits in the top left corner; raise the y axis's top so the lines stay below it.
	// Each legend row takes about 5% of a panel's height.
	room := 0.05*float64(len(lines)) + 0.05
	if logWorthy(ys) {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = readableLogTicks{}
		p.Y.Min = lo
		p.Y.Max = math.Exp(math.Log(lo) + (math.Log(hi)-math.Log(lo))/(1-room))
	} else {
		// A linear axis starts at zero so growth is not exaggerated.
		lo = math.Min(0, lo)
		p.Y.Min = lo
		if hi > lo {
			p.Y.Max = lo + (hi-lo)/(1-room)
		}
	}
	return p, nil
}

// readableLogTicks are gonum's log ticks labelled like the tables: "10,000" rather than "10000"
// or "1e+06".
type readableLogTicks struct{}

func (readableLogTicks) Ticks(min, max float64) []plot.Tick {
	ticks := plot.LogTicks{Prec: -1}.Ticks(min, max)
	for i, t := range ticks {
		if t.Label != "" && t.Value >= 1 {
			ticks[i].Label = thousands(int(math.Round(t.Value)))
		}
	}
	return ticks
}

func minMax(vals []float64) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, v := range vals {
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	return lo, hi
}

// logWorthy reports whether values span enough orders of magnitude for a log axis, and can go on
// one (all positive).
func logWorthy(vals []float64) bool {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range vals {
		if v <= 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			return false
		}
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	return len(vals) > 0 && hi/lo >= spanForLog
}
