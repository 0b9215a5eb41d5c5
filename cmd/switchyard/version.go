package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
)

// version is the release, stamped with -ldflags "-X main.version=v1.2.3"; unstamped builds report
// the module version and commit that Go recorded.
var version = ""

// printVersion is --version (one line) and --version=raw (every detail), as kube-proxy prints its own.
func printVersion(w io.Writer, raw bool) {
	v, info := version, map[string]string{}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			info[s.Key] = s.Value
		}
	}
	if v == "" {
		v = "(devel)"
	}
	if !raw {
		fmt.Fprintf(w, "Switchyard %s\n", v)
		return
	}
	fmt.Fprintf(w, "version=%s revision=%s revisionTime=%s modified=%s goVersion=%s platform=%s/%s\n", v,
		info["vcs.revision"], info["vcs.time"], info["vcs.modified"], runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// applyOOMScoreAdj is --oom-score-adj: it writes the value to path (/proc/self/oom_score_adj).
func applyOOMScoreAdj(path string, v int32) error {
	if err := os.WriteFile(path, []byte(strconv.Itoa(int(v))), 0o644); err != nil {
		return fmt.Errorf("--oom-score-adj=%d: %w", v, err)
	}
	return nil
}
