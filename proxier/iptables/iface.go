package iptables

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"strings"

	goipt "github.com/coreos/go-iptables/iptables"

	"github.com/switchyard/switchyard/proxier/model"
)

// Interface is everything Proxier does to the kernel's tables of one family: one iptables-restore
// transaction per sync, plus the small jobs around it. Real execs the iptables binaries; Fake keeps
// the tables in memory and rejects what the kernel rejects.
type Interface interface {
	// Restore feeds data to `iptables-restore --noflush -w`. On error none of data is in force.
	Restore(data []byte) error
	// ChainExists reports whether table holds chain.
	ChainExists(table, chain string) (bool, error)
	// EnsureRule inserts rule at the top of table/chain unless an identical rule is already there.
	EnsureRule(table, chain string, rule ...string) error
	// DeleteRule removes rule from table/chain if it is there.
	DeleteRule(table, chain string, rule ...string) error
	// ListChains returns every chain of table. It reads the whole table: keep it off the hot path.
	ListChains(table string) ([]string, error)
	// Save returns `iptables-save -t table`. It reads the whole table: full syncs only.
	Save(table string) ([]byte, error)
}

// Variant is the iptables backend: the nf_tables-based one or the legacy xtables one. A node must use
// the variant kubelet and its CNI use, or rules land in tables the kernel path does not consult the
// way the others expect.
type Variant string

const (
	VariantNFT    Variant = "nft"
	VariantLegacy Variant = "legacy"
)

// Real drives the iptables binaries of one family and variant. go-iptables does the small jobs;
// Restore execs the matching iptables-restore directly so the whole sync is one transaction.
type Real struct {
	ipt                   *goipt.IPTables
	restorePath, savePath string
}

var _ Interface = (*Real)(nil)

// NewReal finds the binaries for family and variant (e.g. iptables-nft, ip6tables-legacy-restore).
func NewReal(family model.IPFamily, variant Variant) (*Real, error) {
	base := "iptables"
	proto := goipt.ProtocolIPv4
	if family == model.IPv6 {
		base, proto = "ip6tables", goipt.ProtocolIPv6
	}
	if variant != VariantNFT && variant != VariantLegacy {
		return nil, fmt.Errorf("unknown iptables variant %q (want %q or %q)", variant, VariantNFT, VariantLegacy)
	}
	bin, err := exec.LookPath(base + "-" + string(variant))
	if err != nil {
		return nil, fmt.Errorf("find %s-%s: %w", base, variant, err)
	}
	restore, err := exec.LookPath(base + "-" + string(variant) + "-restore")
	if err != nil {
		return nil, fmt.Errorf("find %s-%s-restore: %w", base, variant, err)
	}
	save, err := exec.LookPath(base + "-" + string(variant) + "-save")
	if err != nil {
		return nil, fmt.Errorf("find %s-%s-save: %w", base, variant, err)
	}
	ipt, err := goipt.New(goipt.IPFamily(proto), goipt.Path(bin), goipt.Timeout(5))
	if err != nil {
		return nil, fmt.Errorf("set up %s: %w", bin, err)
	}
	return &Real{ipt: ipt, restorePath: restore, savePath: save}, nil
}

// HasRandomFully reports whether MASQUERADE supports --random-fully with this binary.
func (r *Real) HasRandomFully() bool { return r.ipt.HasRandomFully() }

func (r *Real) Restore(data []byte) error {
	cmd := exec.Command(r.restorePath, "--noflush", "-w", "5")
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s --noflush: %w: %s", r.restorePath, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (r *Real) Save(table string) ([]byte, error) {
	var stderr bytes.Buffer
	cmd := exec.Command(r.savePath, "-t", table)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s -t %s: %w: %s", r.savePath, table, err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

func (r *Real) ChainExists(table, chain string) (bool, error) {
	ok, err := r.ipt.ChainExists(table, chain)
	if err != nil {
		return false, fmt.Errorf("check chain %s/%s: %w", table, chain, err)
	}
	return ok, nil
}

func (r *Real) EnsureRule(table, chain string, rule ...string) error {
	if err := r.ipt.InsertUnique(table, chain, 1, rule...); err != nil {
		return fmt.Errorf("ensure rule in %s/%s: %w", table, chain, err)
	}
	return nil
}

func (r *Real) DeleteRule(table, chain string, rule ...string) error {
	err := r.ipt.DeleteIfExists(table, chain, rule...)
	var e *goipt.Error
	if errors.As(err, &e) && e.IsNotExist() {
		return nil // the chain the rule would jump to is gone, so the rule is too
	}
	if err != nil {
		return fmt.Errorf("delete rule from %s/%s: %w", table, chain, err)
	}
	return nil
}

func (r *Real) ListChains(table string) ([]string, error) {
	cs, err := r.ipt.ListChains(table)
	if err != nil {
		return nil, fmt.Errorf("list chains of %s: %w", table, err)
	}
	return cs, nil
}
