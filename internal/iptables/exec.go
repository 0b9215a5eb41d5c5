package iptables

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"strings"

	goipt "github.com/coreos/go-iptables/iptables"
	"github.com/vishvananda/netns"

	"github.com/switchyard/switchyard/internal/nsthread"
	"github.com/switchyard/switchyard/proxier/model"
)

// Exec programs the iptables of one family and variant (iptables-nft, ip6tables-legacy, ...).
// Restore is one iptables-restore run, so a whole sync is one transaction; the small jobs go
// through github.com/coreos/go-iptables, which has no restore.
type Exec struct {
	ns                    netns.NsHandle // netns.None(): the caller's namespace
	ipt                   *goipt.IPTables
	restorePath, savePath string
}

var _ Interface = (*Exec)(nil)

// ExecOption configures NewExec.
type ExecOption func(*Exec)

// InNamespace makes every method of the Exec run its iptables processes inside ns (from a thread
// that enters ns; processes inherit their starting thread's namespace), for a test namespace or a
// lab. The caller keeps ns open while the Exec is in use and closes it afterwards. Without it the
// Exec works in the namespace of the calling thread.
func InNamespace(ns netns.NsHandle) ExecOption { return func(e *Exec) { e.ns = ns } }

// NewExec finds the binaries for family and variant. VariantDefault runs whichever "iptables" the
// node's alternatives select. A missing binary is an error wrapping exec.ErrNotFound.
func NewExec(family model.IPFamily, variant Variant, opts ...ExecOption) (*Exec, error) {
	if err := variant.check(); err != nil {
		return nil, err
	}
	base, proto := "iptables", goipt.ProtocolIPv4
	if family == model.IPv6 {
		base, proto = "ip6tables", goipt.ProtocolIPv6
	}
	if variant != VariantDefault {
		base += "-" + string(variant)
	}
	e := &Exec{ns: netns.None()}
	for _, o := range opts {
		o(e)
	}
	var bin string
	for _, b := range []struct {
		path *string
		name string
	}{{&bin, base}, {&e.restorePath, base + "-restore"}, {&e.savePath, base + "-save"}} {
		p, err := exec.LookPath(b.name)
		if err != nil {
			return nil, fmt.Errorf("find %s: %w", b.name, err)
		}
		*b.path = p
	}
	// go-iptables runs `bin --version` once here (the answer does not depend on the namespace) to
	// learn what the binary supports; every call then waits up to 5 s for the xtables lock.
	ipt, err := goipt.New(goipt.IPFamily(proto), goipt.Path(bin), goipt.Timeout(5))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", bin, err)
	}
	e.ipt = ipt
	return e, nil
}

// do runs fn where the Exec's processes belong: on a thread inside its namespace, or right here.
func (e *Exec) do(fn func() error) error {
	if !e.ns.IsOpen() {
		return fn()
	}
	return nsthread.Do(e.ns, fn)
}

// tidy makes a go-iptables failure read well in a log line: its message ends with iptables' own
// complaint, newline included. The original stays reachable through errors.As.
func tidy(err error) error {
	var ge *goipt.Error
	if errors.As(err, &ge) {
		return &execError{err: ge}
	}
	return err
}

// execError is a failed iptables run: the command line, exit status and iptables' complaint.
type execError struct{ err *goipt.Error }

func (e *execError) Error() string { return strings.TrimSpace(e.err.Error()) }
func (e *execError) Unwrap() error { return e.err }

func (e *Exec) Restore(data []byte) error {
	return e.do(func() error {
		cmd := exec.Command(e.restorePath, "--noflush", "-w", "5")
		cmd.Stdin = bytes.NewReader(data)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s --noflush: %w: %s", e.restorePath, err, strings.TrimSpace(string(out)))
		}
		return nil
	})
}

func (e *Exec) Save(table string) ([]byte, error) { return e.save("-t", table) }

// SaveAll returns `iptables-save` of every table, for tools that inspect a node (the demo, the
// comparison with kube-proxy). It reads every table: never on a sync's path.
func (e *Exec) SaveAll() ([]byte, error) { return e.save() }

func (e *Exec) save(args ...string) (out []byte, err error) {
	err = e.do(func() error {
		var stderr bytes.Buffer
		cmd := exec.Command(e.savePath, args...)
		cmd.Stderr = &stderr
		if out, err = cmd.Output(); err != nil {
			return fmt.Errorf("%s %s: %w: %s", e.savePath, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
		}
		return nil
	})
	return out, err
}

func (e *Exec) ChainExists(table, chain string) (ok bool, err error) {
	err = e.do(func() error {
		// go-iptables asks for rule 1 only (-S chain 1): cheap however long the chain is.
		ok, err = e.ipt.ChainExists(table, chain)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("check chain %s/%s: %w", table, chain, tidy(err))
	}
	return ok, nil
}

func (e *Exec) EnsureRule(pos Position, table, chain string, rule ...string) error {
	err := e.do(func() error {
		// Both check with iptables -C first, which finds the rule wherever it is in the chain.
		if pos == Append {
			return e.ipt.AppendUnique(table, chain, rule...)
		}
		return e.ipt.InsertUnique(table, chain, 1, rule...)
	})
	if err != nil {
		return fmt.Errorf("ensure rule in %s/%s: %w", table, chain, tidy(err))
	}
	return nil
}

func (e *Exec) DeleteRule(table, chain string, rule ...string) error {
	err := e.do(func() error { return e.ipt.DeleteIfExists(table, chain, rule...) })
	var ge *goipt.Error
	if err != nil && !(errors.As(err, &ge) && ge.IsNotExist()) {
		return fmt.Errorf("delete rule from %s/%s: %w", table, chain, tidy(err))
	}
	// iptables -C fails with status 1 both for a missing rule and for a rule naming a missing chain
	// or target, and a rule whose chain or target is gone is gone too.
	return nil
}

func (e *Exec) ListChains(table string) (chains []string, err error) {
	err = e.do(func() error {
		chains, err = e.ipt.ListChains(table)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list chains of %s: %w", table, tidy(err))
	}
	return chains, nil
}

// HasRandomFully reports whether MASQUERADE supports --random-fully with this binary (iptables
// 1.6.2 and later).
func (e *Exec) HasRandomFully() bool { return e.ipt.HasRandomFully() }
