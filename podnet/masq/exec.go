package masq

import (
	"bytes"
	"fmt"
	"os/exec"
	"strings"
)

// Exec runs the iptables binaries found in PATH (whichever variant the node's alternatives select,
// which is the one kubelet and kube-proxy use too).
type Exec struct {
	// Prefix is prepended to every command, e.g. {"ip", "netns", "exec", "ns1"} in tests.
	Prefix []string
	// Variant is "nft" or "legacy" to run iptables-<variant> and iptables-<variant>-restore, the
	// variant the proxy detected; empty runs whatever "iptables" the node's alternatives select.
	Variant string
}

// binary names an iptables tool of the configured variant.
func (e *Exec) binary(tool string) string {
	if e.Variant == "" {
		return tool
	}
	if tool == "iptables" {
		return "iptables-" + e.Variant
	}
	return strings.Replace(tool, "iptables-", "iptables-"+e.Variant+"-", 1)
}

var _ Iptables = (*Exec)(nil)

func (e *Exec) command(argv ...string) *exec.Cmd {
	full := append(append([]string(nil), e.Prefix...), argv...)
	return exec.Command(full[0], full[1:]...)
}

// Restore runs iptables-restore --noflush --wait with data on stdin.
func (e *Exec) Restore(data []byte) error {
	cmd := e.command(e.binary("iptables-restore"), "--noflush", "--wait")
	cmd.Stdin = bytes.NewReader(data)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("iptables-restore: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// EnsureRule checks with -C and adds with -I or -A when missing.
func (e *Exec) EnsureRule(table, chain string, rule []string, insert bool) error {
	check := append([]string{e.binary("iptables"), "--wait", "-t", table, "-C", chain}, rule...)
	if err := e.command(check...).Run(); err == nil {
		return nil
	}
	op := "-A"
	if insert {
		op = "-I"
	}
	add := append([]string{e.binary("iptables"), "--wait", "-t", table, op, chain}, rule...)
	if out, err := e.command(add...).CombinedOutput(); err != nil {
		return fmt.Errorf("iptables %s %s/%s: %w: %s", op, table, chain, err, strings.TrimSpace(string(out)))
	}
	return nil
}
