package healthcheck

import (
	"io"
	"net"
	"net/http"
	"net/netip"
	"reflect"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/switchyard/switchyard/internal/polltest"
	"github.com/switchyard/switchyard/proxier/model"
)

func answers(url string) bool {
	resp, err := http.Get(url)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b) == "served"
}

func TestBusyPortIsRetriedAndEventuallyServed(t *testing.T) {
	// Someone else (kube-proxy, during a migration) holds the port.
	occupier, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := occupier.Addr().String()
	clk := clocktesting.NewFakeClock(time.Now())
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "served") })

	srv, err := StartServer(clk, NetListener{}, addr, h)
	if err == nil {
		t.Fatal("the first bind of a busy port must report its error")
	}
	defer srv.Close()

	// Still busy at the first retry.
	polltest.Eventually(t, "the server waits to retry", clk.HasWaiters)
	clk.Step(RetryInterval)
	polltest.Eventually(t, "the server waits to retry again", clk.HasWaiters)

	// The other proxy goes; the next retry takes the port.
	_ = occupier.Close()
	clk.Step(RetryInterval)
	polltest.Eventually(t, "the port is served", func() bool { return answers("http://" + addr + "/") })

	srv.Close()
	if answers("http://" + addr + "/") {
		t.Fatal("still served after Close")
	}
}

func TestServiceHealthRetriesAPortItCouldNotOpen(t *testing.T) {
	l := &loopbackListener{addrs: map[string]string{}, fail: map[string]bool{":30002": true}}
	clk := clocktesting.NewFakeClock(time.Now())
	proxy := NewProxyHealth(clk, time.Minute)
	sh := NewServiceHealth(clk, l, proxy, nil)
	defer sh.Close()

	svc := model.ServicePortName{ServiceKey: model.ServiceKey{Namespace: "ns", Name: "late"}}
	snap := model.NewSnapshot()
	snap.Node.Name = "n1"
	snap.Services[svc] = &model.ServicePort{Name: svc, HealthCheckNodePort: 30002}
	snap.Endpoints[svc] = []model.Endpoint{{IP: netip.MustParseAddr("10.244.1.2"), Port: 80, Ready: true, NodeName: "n1"}}
	if err := sh.Sync(snap); err == nil {
		t.Fatal("a port that cannot be opened must be reported")
	}

	polltest.Eventually(t, "the server waits to retry", clk.HasWaiters)
	l.mu.Lock()
	l.fail[":30002"] = false
	l.mu.Unlock()
	clk.Step(RetryInterval)
	polltest.Eventually(t, "the port is opened", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.addrs[":30002"] != ""
	})
	polltest.Eventually(t, "the port is served", func() bool {
		resp, err := http.Get(l.url(":30002"))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

func TestListenHostsFollowNodePortAddresses(t *testing.T) {
	node := []netip.Addr{
		netip.MustParseAddr("127.0.0.1"),
		netip.MustParseAddr("192.168.50.10"),
		netip.MustParseAddr("192.168.50.11"),
		netip.MustParseAddr("10.0.0.5"),
		netip.MustParseAddr("fd00::10"),
	}
	pfx := func(s ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, p := range s {
			out = append(out, netip.MustParsePrefix(p))
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		cidrs []netip.Prefix
		want  []string
	}{
		{"unset: all addresses", nil, nil},
		{"0.0.0.0/0: all addresses", pfx("192.168.50.0/24", "0.0.0.0/0"), nil},
		{"IPv6 CIDRs only: all IPv4 addresses", pfx("fd00::/64"), nil},
		{"one CIDR", pfx("192.168.50.0/24"), []string{"192.168.50.10", "192.168.50.11"}},
		{"overlapping CIDRs, one listener per address", pfx("192.168.50.0/24", "192.168.50.10/32", "127.0.0.0/8"), []string{"127.0.0.1", "192.168.50.10", "192.168.50.11"}},
		{"no address matches: none", pfx("172.16.0.0/12"), []string{}},
	} {
		if got := ListenHosts(tc.cidrs, node); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %#v, want %#v", tc.name, got, tc.want)
		}
	}
}

func TestServiceHealthListensOnEachHost(t *testing.T) {
	l := &loopbackListener{addrs: map[string]string{}, fail: map[string]bool{}}
	clk := clocktesting.NewFakeClock(time.Now())
	sh := NewServiceHealth(clk, l, NewProxyHealth(clk, time.Minute), []string{"192.168.50.10", "192.168.50.11"})
	defer sh.Close()
	svc := model.ServicePortName{ServiceKey: model.ServiceKey{Namespace: "ns", Name: "lb"}}
	snap := model.NewSnapshot()
	snap.Services[svc] = &model.ServicePort{Name: svc, HealthCheckNodePort: 30001}
	if err := sh.Sync(snap); err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.addrs) != 2 || l.addrs["192.168.50.10:30001"] == "" || l.addrs["192.168.50.11:30001"] == "" {
		t.Fatalf("listened on %v", l.addrs)
	}
}
