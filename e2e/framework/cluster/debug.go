package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// DumpOnFailure registers a cleanup that, when t has failed, prints each node's rules and
// network state and the tail of every log, so a failing scenario explains itself in CI output.
func (c *Cluster) DumpOnFailure(t testing.TB) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(c.Debug(context.Background()))
		}
	})
}

// nodeDumps are the commands whose output describes a node's data path. Commands missing on the
// machine (ipvsadm outside the VM, a legacy iptables) are reported as such, not as failures.
var nodeDumps = [][]string{
	{"ip", "-br", "addr"},
	{"ip", "route"},
	{"ip", "neigh", "show", "nud", "permanent"},
	{"bridge", "fdb", "show"},
	{"iptables-save"},
	{"iptables-legacy-save"},
	{"ipvsadm", "-Ln"},
	{"ipset", "list", "-terse"},
	{"conntrack", "-L"},
}

// Debug returns a readable dump of every node's rules and state and the last lines of each log.
func (c *Cluster) Debug(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var b strings.Builder
	for _, n := range c.Nodes {
		fmt.Fprintf(&b, "\n===== node %s (%s) =====\n", n.Name, n.IP)
		for _, argv := range nodeDumps {
			if _, err := exec.LookPath(argv[0]); err != nil {
				fmt.Fprintf(&b, "--- %s: not installed\n", strings.Join(argv, " "))
				continue
			}
			out, err := c.Exec(ctx, n.Name, argv...)
			fmt.Fprintf(&b, "--- %s\n%s", strings.Join(argv, " "), out)
			if err != nil {
				fmt.Fprintf(&b, "(error: %v)\n", err)
			}
		}
	}
	logs, _ := os.ReadDir(c.State + "/logs")
	for _, l := range logs {
		fmt.Fprintf(&b, "\n===== log %s (last 40 lines) =====\n%s", l.Name(), tail(c.State+"/logs/"+l.Name(), 40))
	}
	return b.String()
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read: %v)\n", err)
	}
	lines := strings.SplitAfter(string(data), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "")
}
