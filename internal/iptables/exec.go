package iptables

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"

	"github.com/switchyard/switchyard/proxier/model"
)

// Exec runs the iptables binaries of one family and variant (iptables-nft, ip6tables-legacy-restore,
// ...). Restore is one iptables-restore run, so a whole sync is one transaction; the small jobs run
// iptables itself.
type Exec struct {
	prefix                     []string
	bin, restorePath, savePath string
}

var _ Interface = (*Exec)(nil)

// NewExec finds the binaries for family and variant. VariantDefault runs whichever "iptables" the
// node's alternatives select. prefix, if any, is prepended to every command, e.g. {"ip", "netns",
// "exec", "ns1"} to program a test namespace. A missing binary is an error wrapping
// exec.ErrNotFound.
func NewExec(family model.IPFamily, variant Variant, prefix ...string) (*Exec, error) {
	if err := variant.check(); err != nil {
		return nil, err
	}
	base := "iptables"
	if family == model.IPv6 {
		base = "ip6tables"
	}
	if variant != VariantDefault {
		base += "-" + string(variant)
	}
	e := &Exec{prefix: prefix}
	for _, b := range []struct {
		path *string
		name string
	}{{&e.bin, base}, {&e.restorePath, base + "-restore"}, {&e.savePath, base + "-save"}} {
		p, err := exec.LookPath(b.name)
		if err != nil {
			return nil, fmt.Errorf("find %s: %w", b.name, err)
		}
		*b.path = p
	}
	return e, nil
}

func (e *Exec) command(argv ...string) *exec.Cmd {
	full := append(append([]string(nil), e.prefix...), argv...)
	return exec.Command(full[0], full[1:]...)
}

// run runs the iptables binary with args and returns what it printed; a failure carries iptables'
// complaint and exit status.
func (e *Exec) run(args ...string) ([]byte, error) {
	cmd := e.command(append([]string{e.bin, "-w", "5"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, &execError{cmd: e.bin + " " + strings.Join(args, " "), err: err, stderr: strings.TrimSpace(stderr.String())}
	}
	return out, nil
}

// execError is a failed iptables run.
type execError struct {
	cmd, stderr string
	err         error
}

func (e *execError) Error() string { return fmt.Sprintf("%s: %v: %s", e.cmd, e.err, e.stderr) }
func (e *execError) Unwrap() error { return e.err }

// exitedWith reports whether err is an iptables run that ended with exit status code.
func exitedWith(err error, code int) bool {
	var ee *exec.ExitError
	return errors.As(err, &ee) && ee.ExitCode() == code
}

func (e *Exec) Restore(data []byte) error {
	cmd := e.command(e.restorePath, "--noflush", "-w", "5")
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s --noflush: %w: %s", e.restorePath, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (e *Exec) Save(table string) ([]byte, error) {
	var stderr bytes.Buffer
	cmd := e.command(e.savePath, "-t", table)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s -t %s: %w: %s", e.savePath, table, err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

func (e *Exec) ChainExists(table, chain string) (bool, error) {
	// -S with a rule number is cheap however long the chain is, and fine when the chain is empty.
	_, err := e.run("-t", table, "-S", chain, "1")
	switch {
	case err == nil:
		return true, nil
	case exitedWith(err, 1):
		return false, nil
	}
	return false, fmt.Errorf("check chain %s/%s: %w", table, chain, err)
}

// exists reports whether rule is in table/chain. iptables -C fails with status 1 both for a missing
// rule and for a rule naming a missing chain or target: either way it is not there.
func (e *Exec) exists(table, chain string, rule []string) (bool, error) {
	_, err := e.run(append([]string{"-t", table, "-C", chain}, rule...)...)
	switch {
	case err == nil:
		return true, nil
	case exitedWith(err, 1):
		return false, nil
	}
	return false, err
}

func (e *Exec) EnsureRule(pos Position, table, chain string, rule ...string) error {
	ok, err := e.exists(table, chain, rule)
	if err == nil && !ok {
		op := []string{"-I", chain, "1"}
		if pos == Append {
			op = []string{"-A", chain}
		}
		_, err = e.run(append(append([]string{"-t", table}, op...), rule...)...)
	}
	if err != nil {
		return fmt.Errorf("ensure rule in %s/%s: %w", table, chain, err)
	}
	return nil
}

func (e *Exec) DeleteRule(table, chain string, rule ...string) error {
	ok, err := e.exists(table, chain, rule)
	if err == nil && ok {
		_, err = e.run(append([]string{"-t", table, "-D", chain}, rule...)...)
	}
	if err != nil && !isNotExist(err) {
		return fmt.Errorf("delete rule from %s/%s: %w", table, chain, err)
	}
	return nil // the chain the rule would jump to is gone, so the rule is too
}

// isNotExist recognises iptables' complaints about a rule or chain that is not there.
func isNotExist(err error) bool {
	var ee *execError
	if !errors.As(err, &ee) {
		return false
	}
	for _, s := range []string{"Bad rule (does a matching rule exist in that chain?)", "No chain/target/match by that name", "No such file or directory", "does not exist"} {
		if strings.Contains(ee.stderr, s) {
			return true
		}
	}
	return false
}

func (e *Exec) ListChains(table string) ([]string, error) {
	out, err := e.run("-t", table, "-S")
	if err != nil {
		return nil, fmt.Errorf("list chains of %s: %w", table, err)
	}
	// -S prints the policies (-P) and the user chains (-N) before any rule.
	var chains []string
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 || (f[0] != "-P" && f[0] != "-N") {
			break
		}
		chains = append(chains, f[1])
	}
	return chains, nil
}

var versionRE = regexp.MustCompile(`v(\d+)\.(\d+)\.(\d+)`)

// HasRandomFully reports whether MASQUERADE supports --random-fully with this binary (iptables
// 1.6.2 and later).
func (e *Exec) HasRandomFully() bool {
	out, err := e.command(e.bin, "--version").Output()
	if err != nil {
		return false
	}
	m := versionRE.FindStringSubmatch(string(out))
	if m == nil {
		return false
	}
	v := [3]int{}
	for i := range v {
		v[i], _ = strconv.Atoi(m[i+1])
	}
	return v[0] > 1 || v[0] == 1 && (v[1] > 6 || v[1] == 6 && v[2] >= 2)
}
