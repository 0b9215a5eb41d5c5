package subnet

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteReadRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "subnet.env")
	_, network, _ := net.ParseCIDR("10.244.0.0/16")
	_, sub, _ := net.ParseCIDR("10.244.3.0/24")
	in := Info{Network: network, Subnet: sub, MTU: 1450, IPMasq: true}
	changed, err := Write(path, in)
	if err != nil || !changed {
		t.Fatalf("first write: changed=%v err=%v", changed, err)
	}
	if changed, err = Write(path, in); err != nil || changed {
		t.Fatalf("identical write: changed=%v err=%v", changed, err)
	}
	out, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if out.Network.String() != "10.244.0.0/16" || out.Subnet.String() != "10.244.3.0/24" || out.MTU != 1450 || !out.IPMasq {
		t.Fatalf("read back %+v", out)
	}
	data, _ := os.ReadFile(path)
	if !strings.Contains(string(data), "SWITCHYARD_SUBNET=10.244.3.0/24\n") {
		t.Fatalf("file content:\n%s", data)
	}
}

func TestReadErrors(t *testing.T) {
	if _, err := Read(filepath.Join(t.TempDir(), "absent.env")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing file: %v", err)
	}
	for name, content := range map[string]string{
		"no subnet":       "SWITCHYARD_NETWORK=10.244.0.0/16\nSWITCHYARD_MTU=1450\n",
		"bad cidr":        "SWITCHYARD_NETWORK=10.244.0.0/16\nSWITCHYARD_SUBNET=10.244.3/24\nSWITCHYARD_MTU=1450\n",
		"outside network": "SWITCHYARD_NETWORK=10.244.0.0/16\nSWITCHYARD_SUBNET=10.9.3.0/24\nSWITCHYARD_MTU=1450\n",
		"tiny mtu":        "SWITCHYARD_NETWORK=10.244.0.0/16\nSWITCHYARD_SUBNET=10.244.3.0/24\nSWITCHYARD_MTU=20\n",
		"garbage":         "hello\n",
		"ipv6":            "SWITCHYARD_NETWORK=fd00::/48\nSWITCHYARD_SUBNET=fd00::/64\nSWITCHYARD_MTU=1450\n",
	} {
		if _, err := Parse([]byte(content)); err == nil {
			t.Errorf("%s: parsed without error", name)
		}
	}
}
