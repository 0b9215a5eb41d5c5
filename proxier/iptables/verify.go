package iptables

import (
	"bytes"
	"slices"
	"strings"

	utiliptables "github.com/switchyard/switchyard/internal/iptables"
	"github.com/switchyard/switchyard/proxier/model"
)

// jumpsPresent reports whether every jump from a built-in chain is in the tables as read back.
func jumpsPresent(nat, filter KernelTable) bool {
	for _, j := range jumpRules {
		t := filter
		if j.table == TableNAT {
			t = nat
		}
		if !strings.Contains(t[j.chain], "-A "+j.chain+" "+utiliptables.JoinWords(j.args)+"\n") {
			return false
		}
	}
	return true
}

// KernelTable is one table as iptables-save printed it: for each chain, its rules ("-A ..." lines,
// each ending in a newline), in order. A declared chain without rules maps to "".
type KernelTable map[string]string

// RenderVerified renders snap completely but writes only the chains whose rules differ from what
// the kernel holds (nat and filter as read back with iptables-save), creates the missing ones and
// deletes chains of ours the state no longer uses, all in one transaction per table. It is the
// full sync for a kernel that already holds our rules: it trusts nothing it applied before, yet a
// periodic resync of an unchanged cluster writes nothing, and a restart sweeps away chains left by
// an earlier process. Because the rendered text is exactly what iptables-save prints back, a chain
// that matches needs no rewrite; a rule printed differently only costs a rewrite of its chain.
// Chains absent from the kernel are staged as in RenderStaged when there are at least batch of them.
func (r *Renderer) RenderVerified(snap *model.Snapshot, nat, filter KernelTable, batch int) *Rendered {
	local := r.localCIDR(snap)
	r.rememberNode(snap, local)
	ctx := r.newContext(snap, local)
	r.reset()
	for name, svc := range snap.Services {
		r.add(name, ctx.renderService(svc, snap.Endpoints[name]))
	}
	r.sortOrder()
	r.shared = r.buildShared()
	sc := r.shared

	out := &Rendered{
		Full:            true,
		ServiceChains:   ChainSet{},
		RulesWritten:    map[string]int{},
		RulesTotal:      map[string]int{},
		NoLocalInternal: r.noLocalInt,
		NoLocalExternal: r.noLocalExt,
	}
	for c := range r.chains {
		out.ServiceChains[c] = struct{}{}
	}
	shardChains := ChainSet{}
	for _, p := range sc.shardOrder {
		shardChains[shardChain(p)] = struct{}{}
		out.ServiceChains[shardChain(p)] = struct{}{}
	}
	r.lastShards = shardChains

	// Desired text of every chain, in write order; shared chains are also remembered for later
	// incremental renders.
	type chainText struct {
		name, text string
		rules      int
	}
	fixed := func(table string, cs []fixedChain) []chainText {
		var out []chainText
		for _, c := range cs {
			text := c.rules.String()
			r.lastFixed[table+"/"+c.name] = text
			out = append(out, chainText{c.name, text, c.rules.rules})
		}
		return out
	}
	natShared := []fixedChain{{chainServices, &sc.natSvc}}
	for _, p := range sc.shardOrder {
		natShared = append(natShared, fixedChain{shardChain(p), sc.shards[p]})
	}
	natShared = append(natShared, fixedChain{chainNodePorts, &sc.natNP}, fixedChain{chainPostrouting, &sc.postrouting}, fixedChain{chainHairpin, &sc.hairpin})
	natWant := append([]chainText{{name: CanaryChain}}, fixed(TableNAT, natShared)...)
	filterWant := append([]chainText{{name: CanaryChain}}, fixed(TableFilter, []fixedChain{
		{chainServices, &sc.filterSvc}, {chainExternalServices, &sc.filterExt}, {chainFirewall, &sc.filterFW},
		{chainNodePorts, &sc.filterNP}, {chainForward, &sc.forward},
	})...)

	// Per-service chains: stage a service whose chains are all missing, rewrite one that differs.
	var staged []*serviceRules
	var stagedChains int
	for _, name := range r.order {
		s := r.services[name]
		texts := splitChains(s.chainBody.String())
		missing, differs := true, false
		for _, c := range s.chains {
			have, ok := nat[c]
			missing = missing && !ok
			differs = differs || !ok || have != texts[c]
		}
		switch {
		case len(s.chains) > 0 && missing:
			staged = append(staged, s)
			stagedChains += len(s.chains)
		case differs:
			for _, c := range s.chains {
				natWant = append(natWant, chainText{c, texts[c], strings.Count(texts[c], "\n")})
			}
		}
	}
	if batch > 0 && stagedChains >= batch {
		var buf bytes.Buffer
		var names []string
		for i, s := range staged {
			if len(names) == 0 {
				buf.WriteString("*nat\n")
			}
			for _, c := range s.chains {
				buf.WriteString(":" + c + " - [0:0]\n")
			}
			buf.WriteString(s.chainBody.String())
			out.RulesWritten[TableNAT] += s.chainBody.rules
			names = append(names, s.chains...)
			if len(names) >= batch || i == len(staged)-1 {
				buf.WriteString("COMMIT\n")
				out.Staged = append(out.Staged, StagedRestore{Restore: bytes.Clone(buf.Bytes()), Chains: names})
				buf.Reset()
				names = nil
			}
		}
	} else {
		for _, s := range staged {
			texts := splitChains(s.chainBody.String())
			for _, c := range s.chains {
				natWant = append(natWant, chainText{c, texts[c], strings.Count(texts[c], "\n")})
			}
		}
	}

	out.RulesTotal[TableNAT] = countRules(natShared) + r.chainRules
	for _, c := range filterWant {
		out.RulesTotal[TableFilter] += c.rules
	}
	var b bytes.Buffer
	changed := false
	for _, tbl := range []struct {
		name   string
		kernel KernelTable
		want   []chainText
	}{{TableNAT, nat, natWant}, {TableFilter, filter, filterWant}} {
		wanted := map[string]bool{}
		for c := range out.ServiceChains {
			wanted[c] = tbl.name == TableNAT
		}
		var decl, body strings.Builder
		for _, c := range tbl.want {
			wanted[c.name] = true
			if have, ok := tbl.kernel[c.name]; ok && have == c.text {
				continue
			}
			decl.WriteString(":" + c.name + " - [0:0]\n")
			body.WriteString(c.text)
			out.RulesWritten[tbl.name] += c.rules
		}
		var stale []string
		for c := range tbl.kernel {
			if !wanted[c] && isServiceChain(c) {
				stale = append(stale, c)
			}
		}
		slices.Sort(stale)
		if decl.Len() == 0 && len(stale) == 0 {
			continue
		}
		changed = true
		b.WriteString("*" + tbl.name + "\n" + decl.String())
		for _, c := range stale {
			b.WriteString(":" + c + " - [0:0]\n")
		}
		b.WriteString(body.String())
		for _, c := range stale {
			b.WriteString("-X " + c + "\n")
		}
		b.WriteString("COMMIT\n")
	}
	out.Restore = b.Bytes()
	out.Empty = !changed
	return out
}

// splitChains splits "-A CHAIN ..." lines by chain.
func splitChains(text string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.SplitAfter(text, "\n") {
		if !strings.HasPrefix(line, "-A ") {
			continue
		}
		chain, _, _ := strings.Cut(line[3:], " ")
		out[chain] += line
	}
	return out
}
