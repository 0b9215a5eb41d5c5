package ipam

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

func cidr(s string) *net.IPNet {
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	return n
}

// TestMain doubles as a tiny allocator process, so the concurrency test can run real separate
// processes against one store, as concurrent CNI invocations are.
func TestMain(m *testing.M) {
	if spec := os.Getenv("SY_IPAM_HELPER"); spec != "" {
		parts := strings.Split(spec, ",") // dir,subnet,id
		s, err := Open(parts[0], "net")
		if err == nil {
			var ip net.IP
			if ip, err = s.Allocate(cidr(parts[1]), parts[2], "eth0"); err == nil {
				fmt.Print(ip.String())
				os.Exit(0)
			}
		}
		fmt.Fprint(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func TestAllocateReleaseIdempotent(t *testing.T) {
	s, err := Open(t.TempDir(), "net")
	if err != nil {
		t.Fatal(err)
	}
	sub := cidr("10.244.1.0/24")
	ip, err := s.Allocate(sub, "c1", "eth0")
	if err != nil || ip.String() != "10.244.1.2" {
		t.Fatalf("first allocation %v, %v; want 10.244.1.2 (.0 is the VTEP, .1 the gateway)", ip, err)
	}
	again, err := s.Allocate(sub, "c1", "eth0")
	if err != nil || !again.Equal(ip) {
		t.Fatalf("repeated ADD got %v, %v; want the same %s", again, err, ip)
	}
	other, _ := s.Allocate(sub, "c1", "net1")
	if other.Equal(ip) {
		t.Fatal("second interface of the same container got the same address")
	}
	if got, err := s.Lookup("c1", "eth0"); err != nil || !got.Equal(ip) {
		t.Fatalf("lookup: %v, %v", got, err)
	}
	for i := 0; i < 2; i++ {
		if _, err := s.Release("c1", "eth0"); err != nil {
			t.Fatalf("release #%d: %v", i+1, err)
		}
	}
	if _, err := s.Release("never-added", "eth0"); err != nil {
		t.Fatalf("release of an unknown container: %v", err)
	}
	if got, _ := s.Lookup("c1", "eth0"); got != nil {
		t.Fatalf("released address still recorded: %v", got)
	}
	if n, _ := s.Allocated(); n != 1 {
		t.Fatalf("%d addresses allocated, want 1", n)
	}
	// The next allocation does not immediately reuse the released .2.
	next, _ := s.Allocate(sub, "c2", "eth0")
	if next.String() != "10.244.1.4" {
		t.Fatalf("next allocation %s, want 10.244.1.4", next)
	}
}

func TestPoolFull(t *testing.T) {
	s, _ := Open(t.TempDir(), "net")
	sub := cidr("10.244.1.0/29") // .2 to .6 usable
	for i := 0; i < 5; i++ {
		if _, err := s.Allocate(sub, fmt.Sprint("c", i), "eth0"); err != nil {
			t.Fatal(err)
		}
	}
	_, err := s.Allocate(sub, "c-extra", "eth0")
	if !errors.Is(err, ErrPoolFull) || !strings.Contains(err.Error(), "10.244.1.0/29") {
		t.Fatalf("want a pool-full error naming the subnet, got %v", err)
	}
	if _, err := s.Release("c3", "eth0"); err != nil {
		t.Fatal(err)
	}
	if ip, err := s.Allocate(sub, "c-extra", "eth0"); err != nil || ip.String() != "10.244.1.5" {
		t.Fatalf("after a release: %v, %v", ip, err)
	}
}

func TestBadInput(t *testing.T) {
	if _, err := Open(t.TempDir(), "../escape"); err == nil {
		t.Fatal("network name with a slash accepted")
	}
	s, _ := Open(t.TempDir(), "net")
	if _, err := s.Allocate(cidr("10.244.1.0/30"), "c", "eth0"); err == nil {
		t.Fatal("a /30 has no pod address once VTEP and gateway are taken")
	}
	if _, err := s.Allocate(cidr("fd00::/64"), "c", "eth0"); err == nil {
		t.Fatal("IPv6 accepted")
	}
	if _, err := s.Allocate(cidr("10.244.1.0/24"), "", "eth0"); err == nil {
		t.Fatal("empty container ID accepted")
	}
}

func TestConcurrentGoroutinesGetUniqueAddresses(t *testing.T) {
	s, _ := Open(t.TempDir(), "net")
	sub := cidr("10.244.1.0/24")
	ips, errs := allocateConcurrently(100, func(i int) (string, error) {
		ip, err := s.Allocate(sub, fmt.Sprint("pod-", i), "eth0")
		return ip.String(), err
	})
	assertUnique(t, ips, errs)
}

func TestConcurrentProcessesGetUniqueAddresses(t *testing.T) {
	dir := t.TempDir()
	ips, errs := allocateConcurrently(100, func(i int) (string, error) {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), fmt.Sprintf("SY_IPAM_HELPER=%s,10.244.7.0/24,pod-%d", dir, i))
		out, err := cmd.Output()
		return string(out), err
	})
	assertUnique(t, ips, errs)
	s, _ := Open(dir, "net")
	if n, _ := s.Allocated(); n != 100 {
		t.Fatalf("%d allocation files, want 100", n)
	}
}

// allocateConcurrently runs allocate(i) for i in [0, n) at once and returns each one's address and
// error, by i.
func allocateConcurrently(n int, allocate func(i int) (string, error)) ([]string, []error) {
	var wg sync.WaitGroup
	ips := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ips[i], errs[i] = allocate(i)
		}()
	}
	wg.Wait()
	return ips, errs
}

func assertUnique(t *testing.T, ips []string, errs []error) {
	t.Helper()
	seen := map[string]int{}
	for i, ip := range ips {
		if errs[i] != nil {
			t.Fatalf("allocation %d: %v", i, errs[i])
		}
		if j, dup := seen[ip]; dup {
			t.Fatalf("allocations %d and %d both got %s", j, i, ip)
		}
		seen[ip] = i
	}
	if len(seen) != len(ips) {
		t.Fatalf("%d unique addresses for %d allocations", len(seen), len(ips))
	}
}
