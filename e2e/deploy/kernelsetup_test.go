package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/e2e/framework/manifests"
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
	script := kernelSetupScript(t)
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

// kernelSetupScript is the shell script of the pod-network overlay's kernel-setup init container.
func kernelSetupScript(t *testing.T) string {
	t.Helper()
	ds, err := buildAll(t)["pod-network"].DaemonSet()
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
