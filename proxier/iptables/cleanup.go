package iptables

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"

	"k8s.io/klog/v2"

	"github.com/switchyard/switchyard/proxier"
)

// Cleanup removes everything Switchyard installed through ipt: the jumps from the built-in chains,
// then every SY- chain of filter, nat and mangle in one restore per table. Tables that hold nothing
// of ours are left alone. It is for `--cleanup`; a running Proxier never calls it.
func Cleanup(ipt Interface) error {
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
			if isOwnedChain(c) {
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

// CleanupHost runs Cleanup for IPv4 and IPv6 on both the nft and the legacy variant, skipping
// combinations whose binaries are not installed. It returns an error only for real failures.
func CleanupHost() error {
	var errs []error
	for _, fam := range []proxier.IPFamily{proxier.IPv4, proxier.IPv6} {
		for _, v := range []Variant{VariantNFT, VariantLegacy} {
			ipt, err := NewReal(fam, v)
			if err != nil {
				if errors.Is(err, exec.ErrNotFound) {
					klog.V(2).InfoS("Skipping cleanup: binaries not installed", "ipFamily", fam, "variant", v)
					continue
				}
				errs = append(errs, err)
				continue
			}
			if err := Cleanup(ipt); err != nil {
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
