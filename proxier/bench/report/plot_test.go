package report

import (
	"encoding/xml"
	"errors"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/proxier/bench"
)

// svgTexts parses path as XML (failing the test if it is not) and returns every text node in it.
func svgTexts(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := xml.NewDecoder(f)
	var texts []string
	sawSVG := false
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s is not well-formed XML: %v", path, err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if tok.Name.Local == "svg" {
				sawSVG = true
			}
		case xml.CharData:
			if s := strings.TrimSpace(string(tok)); s != "" {
				texts = append(texts, s)
			}
		}
	}
	if !sawSVG {
		t.Fatalf("%s has no <svg> element", path)
	}
	return texts
}

// checkSVGTexts plots rep as SVG and checks that the picture holds each of the texts want.
func checkSVGTexts(t *testing.T, rep *bench.Report, want ...string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "bench.svg")
	if err := Plot(rep, path); err != nil {
		t.Fatalf("Plot: %v", err)
	}
	texts := svgTexts(t, path)
	for _, w := range want {
		if !hasText(texts, w) {
			t.Errorf("SVG lacks the text %q; it has %q", w, texts)
		}
	}
}

func hasText(texts []string, want string) bool {
	for _, s := range texts {
		if s == want {
			return true
		}
	}
	return false
}

func TestPlotSVG(t *testing.T) {
	checkSVGTexts(t, fixture(true),
		titleRules, titleApply, titleConnect,
		// Legend entries: every backend in the rules panel, iptables (the one with apply figures) in
		// the other two.
		"iptables rules", "ipvs iptables rules", "ipvs kernel entries",
		"iptables", "iptables first service", "iptables last service",
	)
}

func TestPlotSVGWithoutApply(t *testing.T) {
	checkSVGTexts(t, fixture(false),
		titleRules,
		titleApply+": no data: bench ran without --apply",
		titleConnect+": no data: bench ran without --apply",
		"iptables rules", "ipvs kernel entries",
	)
}

// TestPlotVariantsNamed: a report holding both iptables variants gets a line per variant.
func TestPlotVariantsNamed(t *testing.T) {
	rep := fixture(true)
	legacy := rep.Results[0]
	a := *legacy.Apply
	a.Variant = "legacy"
	legacy.Apply = &a
	rep.Results = append(rep.Results, legacy)
	checkSVGTexts(t, rep, "iptables (nft)", "iptables (legacy)", "iptables (legacy) last service")
}

func TestPlotPNG(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bench.png")
	if err := Plot(fixture(true), path); err != nil {
		t.Fatalf("Plot: %v", err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s does not decode as PNG: %v", path, err)
	}
	if b := img.Bounds(); b.Dx() != 800 || b.Dy() != 1200 {
		t.Errorf("PNG is %dx%d, want 800x1200", b.Dx(), b.Dy())
	}
}

func TestPlotErrors(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"bench.pdf", "bench", "bench.svg.txt"} {
		path := filepath.Join(dir, name)
		err := Plot(fixture(true), path)
		if err == nil || !strings.Contains(err.Error(), ".svg or .png") {
			t.Errorf("Plot to %s: got %v, want an error naming .svg and .png", name, err)
		}
		if _, statErr := os.Stat(path); statErr == nil {
			t.Errorf("Plot to %s left a file behind", name)
		}
	}
	for _, rep := range []*bench.Report{nil, {}} {
		path := filepath.Join(dir, "empty.svg")
		if err := Plot(rep, path); !errors.Is(err, errNoResults) {
			t.Errorf("Plot of an empty report: got %v, want %v", err, errNoResults)
		}
		if _, statErr := os.Stat(path); statErr == nil {
			t.Error("Plot of an empty report left a file behind")
		}
	}
}
