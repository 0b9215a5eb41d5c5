// Package netnstest builds throwaway network namespaces for privileged tests. Every namespace it
// creates is deleted by t.Cleanup, also when the test fails, and nothing it does touches the
// namespace the test process itself runs in.
package netnstest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/switchyard/switchyard/internal/nsthread"
)

// EnvPrivileged is the variable that enables privileged tests. `make test` sets it; a plain
// `go test ./...` leaves it unset and those tests skip with a message saying so.
const EnvPrivileged = "SWITCHYARD_PRIVILEGED"

// Require skips t unless privileged tests are enabled, and fails it when they are enabled but the
// process cannot create namespaces, so that CI never reports a privileged check it did not run.
func Require(t testing.TB) {
	t.Helper()
	if os.Getenv(EnvPrivileged) != "1" {
		t.Skipf("privileged test: set %s=1 to run it (make test does)", EnvPrivileged)
	}
	if os.Geteuid() != 0 {
		t.Fatalf("%s=1 but not running as root", EnvPrivileged)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("privileged tests need iproute2's ip: %v", err)
	}
}

// NS is a named network namespace made for one test.
type NS struct {
	Name string
}

// New creates a namespace named "sy-<prefix>-<random>" and registers its removal with t.Cleanup.
// Loopback is brought up, since nearly every test needs it.
func New(t testing.TB, prefix string) *NS {
	t.Helper()
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("sy-%s-%s", prefix, hex.EncodeToString(b))
	if len(name) > 40 {
		t.Fatalf("namespace name %q too long", name)
	}
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	ns := &NS{Name: name}
	t.Cleanup(func() {
		// Deleting the namespace removes every device, route, rule and conntrack entry inside it; veth
		// peers in other test namespaces go with it.
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	ns.MustRun(t, "ip", "link", "set", "lo", "up")
	return ns
}

// Command returns an exec.Cmd that runs argv inside the namespace.
func (ns *NS) Command(argv ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns.Name}, argv...)...)
}

// Run runs argv inside the namespace and returns its combined output.
func (ns *NS) Run(argv ...string) (string, error) {
	out, err := ns.Command(argv...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s in %s: %w: %s", strings.Join(argv, " "), ns.Name, err, out)
	}
	return string(out), nil
}

// MustRun is Run that fails the test on error.
func (ns *NS) MustRun(t testing.TB, argv ...string) string {
	t.Helper()
	out, err := ns.Run(argv...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Do runs fn on a goroutine whose OS thread has entered the namespace, for code that talks netlink
// or opens sockets directly. The thread never returns to the scheduler's pool in the wrong namespace.
func (ns *NS) Do(fn func() error) error {
	target, err := netns.GetFromName(ns.Name)
	if err != nil {
		return fmt.Errorf("open namespace %s: %w", ns.Name, err)
	}
	defer target.Close()
	return nsthread.Do(target, fn)
}

// Handle opens the namespace for netlink.NewHandleAt and similar; the caller closes it.
func (ns *NS) Handle() (netns.NsHandle, error) { return netns.GetFromName(ns.Name) }

// Netlink opens a netlink handle whose sockets (for the given families, or every family the
// library knows if none is given) live in the namespace. It and the namespace handle it needs are
// closed at t.Cleanup, before the namespace itself is deleted.
func (ns *NS) Netlink(t testing.TB, families ...int) *netlink.Handle {
	t.Helper()
	nsh, err := ns.Handle()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nsh.Close() })
	h, err := netlink.NewHandleAt(nsh, families...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// Veth joins two namespaces with a veth pair, names each end, gives each end an address (CIDR form,
// may be empty) and brings both up.
func Veth(t testing.TB, a *NS, aName, aAddr string, b *NS, bName, bAddr string) {
	t.Helper()
	a.MustRun(t, "ip", "link", "add", aName, "type", "veth", "peer", "name", bName, "netns", b.Name)
	for _, end := range []struct {
		ns         *NS
		name, addr string
	}{{a, aName, aAddr}, {b, bName, bAddr}} {
		if end.addr != "" {
			end.ns.MustRun(t, "ip", "addr", "add", end.addr, "dev", end.name)
		}
		end.ns.MustRun(t, "ip", "link", "set", end.name, "up")
	}
}
