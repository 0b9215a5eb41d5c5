package iptables

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"

	"k8s.io/klog/v2"

	utiliptables "github.com/switchyard/switchyard/internal/iptables"
	"github.com/switchyard/switchyard/proxier/model"
)

// Cleanup removes iptables mode's state from ipt: its jumps from the built-in chains, then its own
// chains (the fixed ones and the per-service ones) in one restore per table. Chains of other
// Switchyard owners, IPVS mode's SY-IPVS-* and the pod network's SY-POD-*, stay: IPVS mode calls
// this at start-up to remove iptables mode's leftovers without touching its own rules. Tables that
// hold nothing of ours are left alone. A running Proxier never calls it.
func Cleanup(ipt utiliptables.Interface) error {
	var errs []error
	for _, j := range jumpRules {
		// A rule cannot jump to a chain that does not exist, and asking iptables to delete one that
		// names a missing chain is an error rather than a no-op; so look for the target first.
		target := j.args[len(j.args)-1]
		if ok, err := ipt.ChainExists(j.table, target); err != nil || !ok {
			if err != nil && !tableMissing(err) {
				errs = append(errs, err)
			}
			continue
		}
		if err := ipt.DeleteRule(j.table, j.chain, j.args...); err != nil {
			errs = append(errs, err)
		}
	}
	for _, t := range []string{TableFilter, TableNAT, TableMangle} {
		chains, err := ipt.ListChains(t)
		if err != nil {
			if tableMissing(err) {
				continue // the kernel has no such table here, so nothing of ours is in it
			}
			errs = append(errs, err)
			continue
		}
		var owned []string
		for _, c := range chains {
			if isModeChain(c) {
				owned = append(owned, c)
			}
		}
		if len(owned) == 0 {
			continue
		}
		if err := ipt.Restore(deleteChainsInput(t, owned)); err != nil {
			errs = append(errs, fmt.Errorf("delete %d chains from %s: %w", len(owned), t, err))
		}
	}
	return errors.Join(errs...)
}

// CleanupAll removes every SY- chain of filter, nat and mangle, whichever part of Switchyard made it,
// after deleting every rule of another chain that jumps into one: `--cleanup` must leave nothing of
// Switchyard's, including chains of older versions or of a mode that is not running now.
func CleanupAll(ipt utiliptables.Interface) error {
	var errs []error
	for _, t := range []string{TableFilter, TableNAT, TableMangle} {
		dump, err := ipt.Save(t)
		if err != nil {
			if tableMissing(err) {
				continue
			}
			errs = append(errs, err)
			continue
		}
		saved, err := utiliptables.ParseSave(dump)
		if err != nil {
			errs = append(errs, fmt.Errorf("read %s: %w", t, err))
			continue
		}
		var jumps, owned []string
		for _, st := range saved.Tables {
			for _, c := range st.Chains {
				if strings.HasPrefix(c.Name, chainPrefix) {
					if c.Policy != "" {
						owned = append(owned, c.Name)
					}
					continue
				}
				for _, r := range c.Rules {
					if w, _ := utiliptables.SplitWords(r); strings.HasPrefix(utiliptables.JumpTarget(w), chainPrefix) {
						jumps = append(jumps, "-D "+c.Name+" "+r)
					}
				}
			}
		}
		if len(owned) == 0 && len(jumps) == 0 {
			continue
		}
		// One transaction per table: declare (and so flush) our chains, delete the jumps into them,
		// then delete the chains.
		var in strings.Builder
		in.WriteString("*" + t + "\n")
		for _, c := range owned {
			in.WriteString(":" + c + " - [0:0]\n")
		}
		for _, j := range jumps {
			in.WriteString(j + "\n")
		}
		for _, c := range owned {
			in.WriteString("-X " + c + "\n")
		}
		in.WriteString("COMMIT\n")
		if err := ipt.Restore([]byte(in.String())); err != nil {
			errs = append(errs, fmt.Errorf("remove %d jumps and %d chains from %s: %w", len(jumps), len(owned), t, err))
		}
	}
	return errors.Join(errs...)
}

// CleanupHost runs CleanupAll for IPv4 and IPv6 on both the nft and the legacy variant, skipping
// combinations whose binaries are not installed. It returns an error only for real failures.
func CleanupHost() error {
	var errs []error
	for _, fam := range []model.IPFamily{model.IPv4, model.IPv6} {
		for _, v := range []utiliptables.Variant{utiliptables.VariantNFT, utiliptables.VariantLegacy} {
			ipt, err := utiliptables.NewExec(fam, v)
			if err != nil {
				if errors.Is(err, exec.ErrNotFound) {
					klog.V(2).InfoS("Skipping cleanup: binaries not installed", "ipFamily", fam, "variant", v)
					continue
				}
				errs = append(errs, err)
				continue
			}
			if err := CleanupAll(ipt); err != nil {
				errs = append(errs, fmt.Errorf("cleanup %s %s: %w", fam, v, err))
			}
		}
	}
	return errors.Join(errs...)
}

// tableMissing recognises iptables' complaint about a table the kernel does not provide.
func tableMissing(err error) bool {
	s := err.Error()
	return strings.Contains(s, "Table does not exist") || strings.Contains(s, "can't initialize")
}
