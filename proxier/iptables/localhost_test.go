package iptables_test

// Localhost node ports (--iptables-localhost-nodeports) and the INVALID drop, traced.

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/internal/iptables/iptablestest"
	"github.com/switchyard/switchyard/internal/nfacct/nfaccttest"
	"github.com/switchyard/switchyard/proxier/iptables"
	"github.com/switchyard/switchyard/proxier/iptables/tracer"
	"github.com/switchyard/switchyard/proxier/metrics"
	"github.com/switchyard/switchyard/proxier/model"
)

// fromLoopback is a process on the node talking to a loopback address, as `curl 127.0.0.1:port`.
func fromLoopback(dst string, port uint16) pkt {
	return pkt{Src: a("127.0.0.1"), Dst: a(dst), Proto: "tcp", SrcPort: 43210, DstPort: port, Local: true}
}

// syncWithCounters syncs snap through a Proxier that creates its nfacct counters in acct.
func syncWithCounters(t *testing.T, snap *model.Snapshot, opts iptables.Options, acct *nfaccttest.Fake) *iptablestest.Fake {
	t.Helper()
	fake := iptablestest.NewFake()
	p, err := iptables.NewProxier(iptables.Config{Options: opts, IPTables: fake, NFAcct: acct})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Sync(snap); err != nil {
		t.Fatalf("sync: %v", err)
	}
	return fake
}

func tracerOver(t *testing.T, fake *iptablestest.Fake) *tracer.Tracer {
	t.Helper()
	rs, err := tracer.Parse(fake.Dump())
	if err != nil {
		t.Fatalf("the tracer cannot read the synced rules: %v", err)
	}
	return tracer.New(rs, traceNode, nil)
}

// notDNATed checks that p is accepted where it was sent, untouched by any service rule.
func notDNATed(t *testing.T, tr *tracer.Tracer, p pkt) {
	t.Helper()
	res := check(t, tr, p, want{verdict: tracer.Accept, dsts: []string{netip.AddrPortFrom(p.Dst, p.DstPort).String()}, masq: no})
	for _, o := range res.Outcomes {
		if o.DNATed {
			t.Fatalf("%s was DNATed\n%s", p, res)
		}
	}
}

func TestLocalhostNodePorts(t *testing.T) {
	acct := nfaccttest.New()
	fake := syncWithCounters(t, traceSnapshot(), traceOptions(), acct)
	for _, name := range metrics.NFAcctCounters {
		if _, err := acct.Get(name); err != nil {
			t.Errorf("counter %s: %v", name, err)
		}
	}
	dump := fake.Dump()
	for _, rule := range []string{
		"-A SY-NODEPORTS -d 127.0.0.0/8 -p tcp -m comment --comment \"default/web:p node port\" -m tcp --dport 30010 -m nfacct --nfacct-name localhost_nps_accepted_pkts -j SY-EXT-",
		"-A SY-FORWARD -m conntrack --ctstate INVALID -m nfacct --nfacct-name ct_state_invalid_dropped_pkts -j DROP",
		"-A INPUT -m comment --comment \"switchyard localnet guard\" -j SY-LOCALNET-GUARD",
		"-A OUTPUT -m comment --comment \"switchyard localnet guard\" -j SY-LOCALNET-GUARD",
	} {
		if !strings.Contains(dump, rule) {
			t.Errorf("the synced tables lack %q:\n%s", rule, dump)
		}
	}
	tr := tracerOver(t, fake)

	t.Run("node to 127.0.0.1:nodePort reaches an endpoint", func(t *testing.T) {
		res := check(t, tr, fromLoopback("127.0.0.1", 30010), want{verdict: tracer.Accept, dsts: webEndpoints, masq: yes})
		for _, o := range res.Outcomes {
			if !counted(o, metrics.NFAcctLocalhostNodePorts) {
				t.Fatalf("not counted as a localhost node port packet:\n%s", o)
			}
		}
	})
	t.Run("node to its own address is not counted as localhost", func(t *testing.T) {
		res := check(t, tr, fromHost("192.168.50.10", 30010), want{verdict: tracer.Accept, dsts: webEndpoints, masq: yes})
		for _, o := range res.Outcomes {
			if counted(o, metrics.NFAcctLocalhostNodePorts) {
				t.Fatalf("counted as a localhost node port packet:\n%s", o)
			}
		}
	})
	t.Run("eTP=Local node port on 127.0.0.1 takes the cluster path", func(t *testing.T) {
		check(t, tr, fromLoopback("127.0.0.1", 30020), want{verdict: tracer.Accept, dsts: []string{"10.244.1.7:8080", "10.244.2.9:8080"}, masq: yes})
	})
	t.Run("node port without endpoints on 127.0.0.1 is rejected", func(t *testing.T) {
		check(t, tr, fromLoopback("127.0.0.1", 30040), want{verdict: tracer.Reject})
	})
	t.Run("remote traffic to a loopback address is dropped by the guard", func(t *testing.T) {
		res := check(t, tr, fromNodeLAN("127.0.0.1", 8080), want{verdict: tracer.Drop})
		if o := res.Outcomes[0]; !strings.Contains(o.Rules[len(o.Rules)-1].Rule.String(), "SY-LOCALNET-GUARD") {
			t.Fatalf("not dropped by the guard:\n%s", res)
		}
	})
	t.Run("the node's own loopback traffic passes the guard", func(t *testing.T) {
		notDNATed(t, tr, fromLoopback("127.0.0.1", 8080))
	})
}

// counted reports whether an outcome went through a rule counting into the nfacct counter name.
func counted(o tracer.Outcome, name string) bool {
	for _, h := range o.Rules {
		if strings.Contains(h.Rule.String(), "--nfacct-name "+name) {
			return true
		}
	}
	return false
}

func TestLocalhostNodePortsOff(t *testing.T) {
	opts := traceOptions()
	opts.LocalhostNodePorts = false
	fake := syncWithCounters(t, traceSnapshot(), opts, nfaccttest.New())
	if strings.Contains(fake.Dump(), "localhost_nps_accepted_pkts") || strings.Contains(fake.Dump(), "-A SY-LOCALNET-GUARD") {
		t.Fatalf("localhost node port rules with localhost node ports off:\n%s", fake.Dump())
	}
	tr := tracerOver(t, fake)
	notDNATed(t, tr, fromLoopback("127.0.0.1", 30010))
	check(t, tr, fromHost("192.168.50.10", 30010), want{verdict: tracer.Accept, dsts: webEndpoints, masq: yes})
}

// TestLocalhostNodePortsFollowNodePortAddresses: as in kube-proxy, loopback node ports exist only
// where --nodeport-addresses admits 127.0.0.1.
func TestLocalhostNodePortsFollowNodePortAddresses(t *testing.T) {
	for _, c := range []struct {
		name      string
		localhost bool
		addrs     []string
		loopback  bool // 127.0.0.1:30010 is a node port
		cni       bool // 10.244.1.1:30010 is a node port
	}{
		{"loopback only", true, []string{"127.0.0.0/8"}, true, false},
		{"loopback asked for while off", false, []string{"127.0.0.1/32", "10.244.1.0/24"}, false, true},
		{"other addresses only", true, []string{"10.244.1.0/24"}, false, true},
		{"a prefix holding loopback and more, on", true, []string{"0.0.0.0/1"}, true, true},
		{"a prefix holding loopback and more, off", false, []string{"0.0.0.0/1"}, false, true},
		{"every address, off", false, []string{"0.0.0.0/0"}, false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			opts := traceOptions()
			opts.LocalhostNodePorts = c.localhost
			for _, s := range c.addrs {
				opts.NodePortAddresses = append(opts.NodePortAddresses, pfx(s))
			}
			if got := opts.LocalhostNodePortsEffective(); got != c.loopback {
				t.Errorf("LocalhostNodePortsEffective = %v, want %v", got, c.loopback)
			}
			tr := tracerOver(t, syncWithCounters(t, traceSnapshot(), opts, nfaccttest.New()))
			for _, dst := range []struct {
				addr string
				open bool
			}{{"127.0.0.1", c.loopback}, {"10.244.1.1", c.cni}} {
				if dst.open {
					check(t, tr, fromLoopback(dst.addr, 30010), want{verdict: tracer.Accept, dsts: webEndpoints, masq: yes})
				} else {
					notDNATed(t, tr, fromLoopback(dst.addr, 30010))
				}
			}
		})
	}
}

// TestNFAcctUnavailable: without nfacct the rules are the same, less the counting.
func TestNFAcctUnavailable(t *testing.T) {
	acct := nfaccttest.New()
	acct.Unavailable = errors.New("nfacct: protocol not supported")
	fake := syncWithCounters(t, traceSnapshot(), traceOptions(), acct)
	if strings.Contains(fake.Dump(), "nfacct") {
		t.Fatalf("rules count into counters that do not exist:\n%s", fake.Dump())
	}
	check(t, tracerOver(t, fake), fromLoopback("127.0.0.1", 30010), want{verdict: tracer.Accept, dsts: webEndpoints, masq: yes})
}

// TestConntrackTCPLiberal: with be_liberal on, INVALID packets are not dropped, as in kube-proxy.
func TestConntrackTCPLiberal(t *testing.T) {
	opts := traceOptions()
	opts.ConntrackTCPLiberal = true
	fake := syncWithCounters(t, traceSnapshot(), opts, nfaccttest.New())
	tr := tracerOver(t, fake)
	p := fromNodeLAN("10.244.2.7", 8080)
	p.CtState = "INVALID"
	check(t, tr, p, want{verdict: tracer.Accept, dsts: []string{"10.244.2.7:8080"}})

	tr = tracerOver(t, syncWithCounters(t, traceSnapshot(), traceOptions(), nfaccttest.New()))
	res := check(t, tr, p, want{verdict: tracer.Drop})
	if !counted(res.Outcomes[0], metrics.NFAcctInvalidDropped) {
		t.Fatalf("INVALID drop not counted:\n%s", res)
	}
}

// TestCountedRulesSurviveVerifiedSync: a restarted Proxier's full sync reads back the counted
// rules as rendered (the real iptables-save spells them with an extra space; see
// TestRealKernelLocalhostNodePorts) and writes nothing.
func TestCountedRulesSurviveVerifiedSync(t *testing.T) {
	acct := nfaccttest.New()
	fake := syncWithCounters(t, traceSnapshot(), traceOptions(), acct)
	p, err := iptables.NewProxier(iptables.Config{Options: traceOptions(), IPTables: fake, NFAcct: acct})
	if err != nil {
		t.Fatal(err)
	}
	fake.LastRestore = nil
	if err := p.Sync(traceSnapshot()); err != nil {
		t.Fatal(err)
	}
	if fake.LastRestore != nil {
		t.Errorf("the verified sync after a restart rewrote an unchanged ruleset:\n%s", fake.LastRestore)
	}
}
