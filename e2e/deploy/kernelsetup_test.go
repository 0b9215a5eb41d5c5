package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/e2e/framework/manifests"
	"github.com/switchyard/switchyard/internal/sysctltest"
	"github.com/switchyard/switchyard/proxier/conntrack"
)

// The pod-network overlay's kernel-setup script, run against a stand-in for the host's /proc/sys/net
// and /sys/module, with a modprobe that fails as it does on a node without /lib/modules. A node whose
// br_netfilter is built in or already loaded has the bridge key, and must get it set: modprobe's
// failure alone says nothing. No root needed.
func TestKernelSetupSetsBridgeKeyWhenModprobeFails(t *testing.T) {
	cases := []struct {
		name             string
		bridgeKey        bool // the host has net/bridge/bridge-nf-call-iptables: br_netfilter is active
		sysModule        bool // /sys/module/br_netfilter exists: loaded as a module, or built in with parameters
		wantSet          bool
		wantNotLoaded    bool
		wantModprobeNote bool
	}{
		{name: "already loaded", bridgeKey: true, sysModule: true, wantSet: true},
		{name: "built in, no sysfs entry", bridgeKey: true, wantSet: true, wantModprobeNote: true},
		{name: "absent", wantNotLoaded: true, wantModprobeNote: true},
	}
	script := kernelSetupScript(t, "pod-network")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			procNet := filepath.Join(dir, "proc-sys-net")
			sysModule := filepath.Join(dir, "sys-module")
			mustWrite(t, filepath.Join(procNet, "ipv4", "ip_forward"), "0\n")
			key := filepath.Join(procNet, "bridge", "bridge-nf-call-iptables")
			if tc.bridgeKey {
				mustWrite(t, key, "0\n")
			}
			if err := os.MkdirAll(sysModule, 0o755); err != nil {
				t.Fatal(err)
			}
			if tc.sysModule {
				if err := os.MkdirAll(filepath.Join(sysModule, "br_netfilter"), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			mustWrite(t, filepath.Join(dir, "bin", "modprobe"), "#!/bin/sh\necho \"modprobe: FATAL: Module $1 not found\" >&2\nexit 1\n")
			if err := os.Chmod(filepath.Join(dir, "bin", "modprobe"), 0o755); err != nil {
				t.Fatal(err)
			}

			s := strings.ReplaceAll(script, "/host/proc/sys/net", procNet)
			s = strings.ReplaceAll(s, "/sys/module", sysModule)
			cmd := exec.Command("/bin/sh", "-ec", s)
			cmd.Env = []string{"PATH=" + filepath.Join(dir, "bin") + ":/usr/bin:/bin"}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("kernel-setup failed: %v\n%s", err, out)
			}
			if got := readTrim(t, filepath.Join(procNet, "ipv4", "ip_forward")); got != "1" {
				t.Errorf("ip_forward = %q, want 1", got)
			}
			if tc.bridgeKey {
				if got := readTrim(t, key); (got == "1") != tc.wantSet {
					t.Errorf("bridge-nf-call-iptables = %q, want set: %v\n%s", got, tc.wantSet, out)
				}
			}
			if got := strings.Contains(string(out), "br_netfilter not loaded"); got != tc.wantNotLoaded {
				t.Errorf("says 'br_netfilter not loaded': %v, want %v\n%s", got, tc.wantNotLoaded, out)
			}
			if got := strings.Contains(string(out), "modprobe br_netfilter failed"); got != tc.wantModprobeNote {
				t.Errorf("notes the failed modprobe: %v, want %v\n%s", got, tc.wantModprobeNote, out)
			}
		})
	}
}

// kernelSetupScript is the shell script of an overlay's kernel-setup init container.
func kernelSetupScript(t *testing.T, overlay string) string {
	t.Helper()
	ds, err := buildAll(t)[overlay].DaemonSet()
	if err != nil {
		t.Fatal(err)
	}
	c, err := manifests.Container(ds, "kernel-setup")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Command) != 3 || c.Command[0] != "/bin/sh" || c.Command[1] != "-ec" {
		t.Fatalf("kernel-setup's command is %q, want /bin/sh -ec SCRIPT", c.Command)
	}
	return c.Command[2]
}

func mustWrite(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readTrim(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// kubeProxyConntrackDefaults are KubeProxyConntrackConfiguration's defaults, which the daemon's
// --conntrack-* flags default to and every kernel-setup writes for it.
var kubeProxyConntrackDefaults = conntrack.Settings{MaxPerCore: 32 * 1024, Min: 128 * 1024,
	TCPEstablishedTimeout: 24 * time.Hour, TCPCloseWaitTimeout: time.Hour}

// Every overlay's kernel-setup script, run against a stand-in for the host's /proc/sys/net (a
// fresh kernel's conntrack values) and /sys/devices/system/cpu/online, sets the conntrack values
// the daemon's defaults ask for, so that the daemon, whose /proc/sys is read-only, then finds
// nothing left to set: conntrack.Apply over the result with every key read-only reports nothing.
// No root needed.
func TestKernelSetupSetsConntrackAsTheDaemonWould(t *testing.T) {
	cases := []struct {
		online     string
		cpus       int
		max, hash  string // before
		wantMax    string
		wantBucket string
	}{
		{online: "0-1", cpus: 2, max: "65536", hash: "16384", wantMax: "131072", wantBucket: "32768"},
		{online: "0-3,6,8-9", cpus: 7, max: "65536", hash: "16384", wantMax: "229376", wantBucket: "57344"},
		{online: "0-95", cpus: 96, max: "65536", hash: "16384", wantMax: "1048576", wantBucket: "262144"},
		{online: "0-1", cpus: 2, max: "2000000", hash: "500000", wantMax: "2000000", wantBucket: "500000"}, // only raised
	}
	for _, overlay := range manifests.Overlays {
		script := kernelSetupScript(t, overlay)
		for _, tc := range cases {
			t.Run(overlay+"/"+tc.online+"/"+tc.max, func(t *testing.T) {
				dir := t.TempDir()
				procNet := filepath.Join(dir, "proc-sys-net")
				nf := filepath.Join(procNet, "netfilter")
				// What the overlays' other lines write, so that they run through.
				for _, k := range []string{"ipv4/ip_forward", "ipv4/vs/conntrack", "ipv4/vs/expire_nodest_conn", "ipv4/vs/expire_quiescent_template"} {
					mustWrite(t, filepath.Join(procNet, k), "0\n")
				}
				kernel := map[string]string{"nf_conntrack_max": tc.max, "nf_conntrack_buckets": tc.hash,
					"nf_conntrack_tcp_timeout_established": "432000", "nf_conntrack_tcp_timeout_close_wait": "60",
					"nf_conntrack_tcp_be_liberal": "0", "nf_conntrack_udp_timeout": "30", "nf_conntrack_udp_timeout_stream": "120"}
				for k, v := range kernel {
					mustWrite(t, filepath.Join(nf, k), v+"\n")
				}
				online := filepath.Join(dir, "cpu-online")
				mustWrite(t, online, tc.online+"\n")
				out, err := runWithoutModules(t, dir, strings.ReplaceAll(script, "/sys/devices/system/cpu/online", online), procNet)
				if err != nil {
					t.Fatalf("kernel-setup failed: %v\n%s", err, out)
				}
				want := map[string]string{"nf_conntrack_max": tc.wantMax, "nf_conntrack_buckets": tc.wantBucket,
					"nf_conntrack_tcp_timeout_established": "86400", "nf_conntrack_tcp_timeout_close_wait": "3600",
					"nf_conntrack_tcp_be_liberal": "0", "nf_conntrack_udp_timeout": "30", "nf_conntrack_udp_timeout_stream": "120"}
				after := map[string]string{}
				for k, v := range want {
					if after[k] = readTrim(t, filepath.Join(nf, k)); after[k] != v {
						t.Errorf("%s = %s, want %s\n%s", k, after[k], v, out)
					}
				}

				// The daemon after it: the same names through its Sysctl seam, nothing writable.
				sys := sysctltest.New(map[string]string{conntrack.ParamHashsize: after["nf_conntrack_buckets"]})
				for k, v := range after {
					sys.Values["net/netfilter/"+k] = v
				}
				for k := range sys.Values {
					sys.ReadOnly[k] = true
				}
				if unset := conntrack.Apply(sys, kubeProxyConntrackDefaults, tc.cpus); len(unset) != 0 {
					t.Errorf("after kernel-setup the daemon still wants to set %v", unset)
				}
			})
		}
	}
}

// Without nf_conntrack (no netfilter keys yet), kernel-setup says so and goes on.
func TestKernelSetupWithoutConntrackGoesOn(t *testing.T) {
	for _, overlay := range manifests.Overlays {
		dir := t.TempDir()
		procNet := filepath.Join(dir, "proc-sys-net")
		for _, k := range []string{"ipv4/ip_forward", "ipv4/vs/conntrack", "ipv4/vs/expire_nodest_conn", "ipv4/vs/expire_quiescent_template"} {
			mustWrite(t, filepath.Join(procNet, k), "0\n")
		}
		out, err := runWithoutModules(t, dir, kernelSetupScript(t, overlay), procNet)
		if err != nil || !strings.Contains(string(out), "nf_conntrack is not loaded") {
			t.Errorf("%s: %v\n%s", overlay, err, out)
		}
	}
}

// runWithoutModules runs a kernel-setup script in dir with procNet for the host's /proc/sys/net, an
// empty /sys/module and a modprobe that always fails, and returns its output.
func runWithoutModules(t *testing.T, dir, script, procNet string) ([]byte, error) {
	t.Helper()
	mustWrite(t, filepath.Join(dir, "bin", "modprobe"), "#!/bin/sh\nexit 1\n")
	if err := os.Chmod(filepath.Join(dir, "bin", "modprobe"), 0o755); err != nil {
		t.Fatal(err)
	}
	s := strings.ReplaceAll(script, "/host/proc/sys/net", procNet)
	s = strings.ReplaceAll(s, "/sys/module", filepath.Join(dir, "sys-module"))
	cmd := exec.Command("/bin/sh", "-ec", s)
	cmd.Env = []string{"PATH=" + filepath.Join(dir, "bin") + ":/usr/bin:/bin"}
	return cmd.CombinedOutput()
}
