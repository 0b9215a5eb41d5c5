package podnet

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/spf13/pflag"

	"github.com/switchyard/switchyard/podnet/cni"
)

func TestInstallCNIWritesBinaryAndConflist(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "plugin")
	os.WriteFile(src, []byte("#!binary v1"), 0o700)
	cfg := DefaultConfig()
	cfg.CNIBinDir, cfg.CNIConfDir = filepath.Join(dir, "bin"), filepath.Join(dir, "net.d")
	cfg.SubnetFile, cfg.CNIDataDir = "/run/sy/subnet.env", "/var/lib/sy"
	if err := InstallCNI(cfg, src); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(cfg.CNIBinDir, "switchyard-cni"))
	if err != nil || st.Mode().Perm() != 0o755 {
		t.Fatalf("plugin binary: %v %v", st, err)
	}
	data, _ := os.ReadFile(filepath.Join(cfg.CNIConfDir, ConflistName))
	var list struct {
		CNIVersion string
		Name       string
		Plugins    []map[string]any
	}
	if err := json.Unmarshal(data, &list); err != nil {
		t.Fatal(err)
	}
	p := list.Plugins[0]
	if list.CNIVersion != "1.0.0" || list.Name != "switchyard" || p["type"] != "switchyard-cni" ||
		p["subnetFile"] != "/run/sy/subnet.env" || p["dataDir"] != "/var/lib/sy" || p["bridge"] != "cni0" {
		t.Fatalf("conflist:\n%s", data)
	}
	// The plugin parses what the daemon writes.
	raw, _ := json.Marshal(map[string]any{"cniVersion": "1.0.0", "name": list.Name, "type": p["type"],
		"bridge": p["bridge"], "subnetFile": p["subnetFile"], "dataDir": p["dataDir"], "hairpinMode": p["hairpinMode"]})
	if _, err := cni.ParseConf(raw); err != nil {
		t.Fatalf("plugin rejects the installed conflist: %v", err)
	}
	// Reinstalling a new binary replaces it; an unreadable source is a clear error.
	os.WriteFile(src, []byte("#!binary v2"), 0o700)
	if err := InstallCNI(cfg, src); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(cfg.CNIBinDir, "switchyard-cni")); string(got) != "#!binary v2" {
		t.Fatalf("binary not updated: %q", got)
	}
	if err := InstallCNI(cfg, filepath.Join(dir, "missing")); err == nil {
		t.Fatal("missing plugin binary accepted")
	}
}

func TestAddFlags(t *testing.T) {
	cfg := DefaultConfig()
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	cfg.AddFlags(fs)
	if err := fs.Parse([]string{"--pod-network=vxlan", "--vxlan-vni=7", "--vxlan-port=4789", "--iface=eth1",
		"--vxlan-direct-routing", "--ip-masq=false", "--cni-bin-dir=/b", "--cni-conf-dir=/c", "--subnet-file=/s"}); err != nil {
		t.Fatal(err)
	}
	if cfg.Mode != "vxlan" || cfg.VNI != 7 || cfg.Port != 4789 || cfg.Iface != "eth1" || !cfg.DirectRouting || cfg.IPMasq ||
		cfg.CNIBinDir != "/b" || cfg.CNIConfDir != "/c" || cfg.SubnetFile != "/s" {
		t.Fatalf("parsed config: %+v", cfg)
	}
	if fs.Lookup("cluster-cidr") != nil {
		t.Fatal("--cluster-cidr belongs to the daemon")
	}
	def := DefaultConfig()
	if def.VNI != 1 || def.Port != 8472 || !def.IPMasq || def.Mode != "" {
		t.Fatalf("defaults: %+v", def)
	}
}
