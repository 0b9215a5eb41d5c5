// Package golden compares what a test produced with a file under the test's testdata/ directory,
// and rewrites that file instead when the test binary runs with -update.
package golden

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ instead of comparing")

// Updating reports whether this run rewrites golden files.
func Updating() bool { return *update }

// Check compares got with testdata/name, or writes got there under -update. A difference fails
// the test with the lines that differ.
func Check(t testing.TB, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file %s (run the test with -update to create it): %v", path, err)
	}
	if string(want) != string(got) {
		t.Errorf("output differs from %s (run the test with -update if the change is intended):\n%s", path, LineDiff(string(want), string(got)))
	}
}

// LineDiff lists the lines only in want ("- ") and only in got ("+ "), counting repeats. It ignores
// order, which is enough to read a ruleset change.
func LineDiff(want, got string) string {
	count := func(s string) map[string]int {
		m := map[string]int{}
		for _, l := range strings.Split(s, "\n") {
			m[l]++
		}
		return m
	}
	w, g := count(want), count(got)
	var b strings.Builder
	for _, l := range strings.Split(want, "\n") {
		if g[l] < w[l] {
			b.WriteString("- " + l + "\n")
			g[l]++
		}
	}
	w = count(want)
	for _, l := range strings.Split(got, "\n") {
		if w[l] == 0 {
			b.WriteString("+ " + l + "\n")
		} else {
			w[l]--
		}
	}
	return b.String()
}
