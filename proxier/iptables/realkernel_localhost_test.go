package iptables_test

// Real-kernel test of localhost node ports: in the lab's node namespace, with route_localnet set
// there as the daemon sets it on a node, TCP and UDP to 127.0.0.1:<nodePort> reach the backends,
// and the nfacct counter kube-proxy's metric reads counts them.

import (
	"errors"
	"strings"
	"syscall"
	"testing"

	utiliptables "github.com/switchyard/switchyard/internal/iptables"
	"github.com/switchyard/switchyard/internal/netnstest"
	"github.com/switchyard/switchyard/internal/nfacct"
	"github.com/switchyard/switchyard/internal/nfacct/nfaccttest"
	"github.com/switchyard/switchyard/proxier/iptables"
	"github.com/switchyard/switchyard/proxier/metrics"
	"github.com/switchyard/switchyard/proxier/model"
)

func TestRealKernelLocalhostNodePorts(t *testing.T) {
	netnstest.Require(t)
	for _, v := range []utiliptables.Variant{utiliptables.VariantNFT, utiliptables.VariantLegacy} {
		t.Run(string(v), func(t *testing.T) { testRealKernelLocalhost(t, v) })
	}
}

func testRealKernelLocalhost(t *testing.T, variant utiliptables.Variant) {
	l := newLab(t)
	h, err := l.node.Handle()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	acct, err := nfacct.NewAt(h)
	if err != nil {
		t.Fatalf("nfacct in %s: %v", l.node.Name, err)
	}
	defer acct.Close()
	// route_localnet is per namespace: this sets the node namespace's, nothing else.
	l.node.MustRun(t, "sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1")

	// sync starts a Proxier, as the daemon does, and has it sync: a verified full sync, which
	// rewrites only the chains whose read-back text differs from the render.
	sync := func(opts iptables.Options) {
		t.Helper()
		err := l.node.Do(func() error {
			ipt, err := utiliptables.NewExec(model.IPv4, variant)
			if err != nil {
				return err
			}
			opts.RandomFully = ipt.HasRandomFully()
			p, err := iptables.NewProxier(iptables.Config{Options: opts, IPTables: ipt, NFAcct: acct})
			if err != nil {
				return err
			}
			return p.Sync(labSnapshot("b1", "b2", "b3"))
		})
		if err != nil {
			t.Fatalf("sync: %v", err)
		}
	}
	sync(traceOptions())

	t.Run("the kernel holds the rules as rendered", func(t *testing.T) {
		acctFake := nfaccttest.New()
		want := splitTables(t, syncWithCounters(t, labSnapshot("b1", "b2", "b3"), traceOptions(), acctFake).Dump())
		// iptables-save 1.8 prints "--nfacct-name  NAME"; the fake, like the renderer, one space.
		saved := strings.ReplaceAll(l.node.MustRun(t, "iptables-"+string(variant)+"-save"), "--nfacct-name  ", "--nfacct-name ")
		got := splitTables(t, saved)
		for _, table := range []string{"filter", "nat"} {
			if got[table] != want[table] {
				t.Errorf("table %s: kernel and fake differ\nkernel:\n%s\nfake:\n%s", table, got[table], want[table])
			}
		}
	})
	before, err := acct.Get(metrics.NFAcctLocalhostNodePorts)
	if err != nil {
		t.Fatalf("the Proxier did not create its counter: %v", err)
	}
	t.Run("node process to 127.0.0.1:NodePort over TCP", func(t *testing.T) {
		c, s := askManyFrom(t, l.node, "tcp", "127.0.0.1:30080", tries, 41000)
		expect(t, "tcp localhost nodeport", c, s, []string{"b1", "b2", "b3"}, source(labGateway))
	})
	t.Run("node process to 127.0.0.1:NodePort over UDP", func(t *testing.T) {
		c, s := askManyFrom(t, l.node, "udp", "127.0.0.1:30053", tries, 42000)
		expect(t, "udp localhost nodeport", c, s, []string{"b1", "b2", "b3"}, source(labGateway))
	})
	t.Run("the localhost node port counter counts each new connection", func(t *testing.T) {
		after, err := acct.Get(metrics.NFAcctLocalhostNodePorts)
		if err != nil {
			t.Fatal(err)
		}
		// nat sees only a connection's first packet, so each exchange (each from a port of its
		// own, so a connection of its own) counts once.
		if got := after.Packets - before.Packets; got != 2*tries {
			t.Fatalf("counter grew by %d packets, want %d", got, 2*tries)
		}
	})

	t.Run("a restart leaves the counted rules alone", func(t *testing.T) {
		// A chain that is written again loses its rules' packet counters, so counters that
		// survive a restart's full sync show the read-back matched the render.
		sync(traceOptions())
		saved := l.node.MustRun(t, "iptables-"+string(variant)+"-save", "-c", "-t", "nat")
		counted := false
		for _, line := range strings.Split(saved, "\n") {
			if strings.Contains(line, "--dport 30080 -m nfacct") {
				counted = !strings.HasPrefix(line, "[0:0]")
			}
		}
		if !counted {
			t.Fatalf("the counted rule for 127.0.0.1:30080 was rewritten (its counters are gone):\n%s", saved)
		}
	})

	t.Run("with localhost node ports off, 127.0.0.1 is not a node port", func(t *testing.T) {
		opts := traceOptions()
		opts.LocalhostNodePorts = false
		sync(opts)
		// Nothing listens on the node itself, so an undiverted SYN is refused.
		_, err := ask(l.node, "tcp", "127.0.0.1:30080")
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("TCP to 127.0.0.1:30080: %v, want connection refused", err)
		}
		c, s := askMany(t, l.node, "tcp", labNodeIP+":30080", 10)
		if len(c) == 0 || len(s) == 0 {
			t.Fatal("the node's own address stopped being a node port")
		}
	})
}
