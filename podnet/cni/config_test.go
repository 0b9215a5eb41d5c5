package cni

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/switchyard/switchyard/podnet/ipam"
)

func cniCode(t *testing.T, err error) uint {
	t.Helper()
	var e *types.Error
	if !errors.As(err, &e) {
		t.Fatalf("want a CNI error, got %T %v", err, err)
	}
	return e.Code
}

func TestParseConfDefaultsAndErrors(t *testing.T) {
	conf, err := ParseConf([]byte(`{"cniVersion":"1.0.0","name":"switchyard","type":"switchyard-cni"}`))
	if err != nil {
		t.Fatal(err)
	}
	if conf.Bridge != "cni0" || conf.SubnetFile != "/run/switchyard/subnet.env" || conf.DataDir != DefaultDataDir || !conf.Hairpin() {
		t.Fatalf("defaults: %+v", conf)
	}
	for name, tc := range map[string]struct {
		json string
		code uint
	}{
		"not json":          {`{"name":`, types.ErrDecodingFailure},
		"no name":           {`{"cniVersion":"1.0.0","type":"switchyard-cni"}`, types.ErrInvalidNetworkConfig},
		"name with slash":   {`{"cniVersion":"1.0.0","name":"a/b"}`, types.ErrInvalidNetworkConfig},
		"long bridge":       {`{"cniVersion":"1.0.0","name":"n","bridge":"abcdefghijklmnopq"}`, types.ErrInvalidNetworkConfig},
		"relative subnet":   {`{"cniVersion":"1.0.0","name":"n","subnetFile":"run/subnet.env"}`, types.ErrInvalidNetworkConfig},
		"relative data dir": {`{"cniVersion":"1.0.0","name":"n","dataDir":"data"}`, types.ErrInvalidNetworkConfig},
		"tiny mtu":          {`{"cniVersion":"1.0.0","name":"n","mtu":100}`, types.ErrInvalidNetworkConfig},
	} {
		_, err := ParseConf([]byte(tc.json))
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if got := cniCode(t, err); got != tc.code {
			t.Errorf("%s: code %d, want %d (%v)", name, got, tc.code, err)
		}
	}
}

func TestAddFailsCleanlyBeforeTouchingTheNode(t *testing.T) {
	dir := t.TempDir()
	conf := func(subnetFile string) []byte {
		return []byte(`{"cniVersion":"1.0.0","name":"switchyard","type":"switchyard-cni","subnetFile":"` + subnetFile +
			`","dataDir":"` + filepath.Join(dir, "data") + `"}`)
	}
	args := &skel.CmdArgs{ContainerID: "c1", IfName: "eth0", Netns: "/var/run/netns/does-not-exist-sy", StdinData: conf(filepath.Join(dir, "absent.env"))}

	err := Add(args)
	if cniCode(t, err) != types.ErrTryAgainLater || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("missing subnet file: %v", err)
	}

	bad := filepath.Join(dir, "bad.env")
	os.WriteFile(bad, []byte("SWITCHYARD_NETWORK=10.244.0.0/16\n"), 0o644)
	args.StdinData = conf(bad)
	if err := Add(args); cniCode(t, err) != types.ErrInvalidNetworkConfig {
		t.Fatalf("incomplete subnet file: %v", err)
	}

	good := filepath.Join(dir, "good.env")
	os.WriteFile(good, []byte("SWITCHYARD_NETWORK=10.244.0.0/16\nSWITCHYARD_SUBNET=10.244.1.0/24\nSWITCHYARD_MTU=1450\n"), 0o644)
	args.StdinData = conf(good)
	if err := Add(args); cniCode(t, err) != types.ErrInvalidNetNS {
		t.Fatalf("missing netns: %v", err)
	}
	args.IfName = "bad/name"
	if err := Add(args); cniCode(t, err) != types.ErrInvalidEnvironmentVariables {
		t.Fatalf("bad ifname: %v", err)
	}
	// None of the failures reserved an address.
	store, _ := ipam.Open(filepath.Join(dir, "data"), "switchyard")
	if n, _ := store.Allocated(); n != 0 {
		t.Fatalf("%d addresses left reserved by failed ADDs", n)
	}
}

func TestHostVethNameIsShortAndStable(t *testing.T) {
	a := HostVethName("0123456789abcdef0123456789abcdef", "eth0")
	if len(a) > 15 || a != HostVethName("0123456789abcdef0123456789abcdef", "eth0") || a == HostVethName("0123456789abcdef0123456789abcdef", "eth1") {
		t.Fatalf("host veth names: %q", a)
	}
}
