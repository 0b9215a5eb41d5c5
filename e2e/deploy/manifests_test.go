// Package deploy checks Switchyard's deployment (deploy/): that every overlay renders, that the
// objects say what the migration guide promises, and, against the local cluster's real API server
// (build tag e2e), that they apply, that their RBAC is enough and no more, and that the DaemonSet's
// exact command line and the kube-proxy ConfigMap start the daemon. The harness it uses to render
// and run the manifests is e2e/framework/manifests.
package deploy

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	v1 "k8s.io/api/core/v1"
	kpconfig "k8s.io/kube-proxy/config/v1alpha1"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/switchyard/switchyard/e2e/framework/manifests"
	"github.com/switchyard/switchyard/podnet"
)

// These tests need no cluster and no root: they render every overlay and check what the manifests
// promise (deploy/README.md, docs/migrate-from-kube-proxy.md) against the objects and the daemon.

func buildAll(t *testing.T) map[string]*manifests.Manifest {
	t.Helper()
	repo, err := manifests.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*manifests.Manifest{}
	for _, o := range manifests.Overlays {
		m, err := manifests.BuildOverlay(repo, o)
		if err != nil {
			t.Fatal(err)
		}
		out[o] = m
	}
	return out
}

func TestOverlaysRenderTheSameObjectsIntoKubeSystem(t *testing.T) {
	for name, m := range buildAll(t) {
		var got []string
		for _, o := range m.Objects {
			got = append(got, o.GetKind()+"/"+o.GetName())
			switch o.GetKind() {
			case "ClusterRole", "ClusterRoleBinding":
				if o.GetNamespace() != "" {
					t.Errorf("%s: cluster-scoped %s/%s has namespace %q", name, o.GetKind(), o.GetName(), o.GetNamespace())
				}
			default:
				if o.GetNamespace() != "kube-system" {
					t.Errorf("%s: %s/%s is in namespace %q, want kube-system", name, o.GetKind(), o.GetName(), o.GetNamespace())
				}
			}
		}
		sort.Strings(got)
		want := []string{"ClusterRole/switchyard", "ClusterRoleBinding/switchyard", "DaemonSet/switchyard", "ServiceAccount/switchyard"}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s renders %v, want %v", name, got, want)
		}
	}
}

// The exact grants: read what the proxy watches, create Events, and patch Nodes only with the pod
// network. Anything more is a regression in least privilege; anything less breaks the daemon (the
// e2e test runs it with these grants and nothing else).
func TestClusterRoleIsLeastPrivilege(t *testing.T) {
	var base []manifests.Grant
	for _, g := range [][3]string{
		{"", "services", "get"}, {"", "services", "list"}, {"", "services", "watch"},
		{"", "nodes", "get"}, {"", "nodes", "list"}, {"", "nodes", "watch"},
		{"discovery.k8s.io", "endpointslices", "get"}, {"discovery.k8s.io", "endpointslices", "list"}, {"discovery.k8s.io", "endpointslices", "watch"},
		{"", "events", "create"}, {"events.k8s.io", "events", "create"},
	} {
		base = append(base, manifests.Grant{Group: g[0], Resource: g[1], Verb: g[2]})
	}
	for name, m := range buildAll(t) {
		cr, err := m.ClusterRole()
		if err != nil {
			t.Fatal(err)
		}
		got, err := manifests.Grants(cr)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want := map[manifests.Grant]bool{}
		for _, g := range base {
			want[g] = true
		}
		if name == "pod-network" {
			want[manifests.Grant{Group: "", Resource: "nodes", Verb: "patch"}] = true
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: ClusterRole grants %v, want exactly %v", name, sortedGrants(got), sortedGrants(want))
		}
		var crb struct {
			RoleRef  struct{ Kind, Name string }
			Subjects []struct{ Kind, Name, Namespace string }
		}
		u, err := m.Find("ClusterRoleBinding", "switchyard")
		if err != nil {
			t.Fatal(err)
		}
		data, _ := json.Marshal(u.Object)
		if err := json.Unmarshal(data, &crb); err != nil {
			t.Fatal(err)
		}
		if crb.RoleRef.Kind != "ClusterRole" || crb.RoleRef.Name != "switchyard" || len(crb.Subjects) != 1 ||
			crb.Subjects[0].Kind != "ServiceAccount" || crb.Subjects[0].Name != "switchyard" || crb.Subjects[0].Namespace != "kube-system" {
			t.Errorf("%s: ClusterRoleBinding binds %+v to %+v, want ClusterRole switchyard to ServiceAccount kube-system/switchyard", name, crb.RoleRef, crb.Subjects)
		}
	}
}

func sortedGrants(m map[manifests.Grant]bool) []string {
	var out []string
	for g := range m {
		out = append(out, g.String())
	}
	sort.Strings(out)
	return out
}

// What issue 7 asks of the DaemonSet, per overlay, including the privilege each mode gets.
func TestDaemonSetShape(t *testing.T) {
	for name, m := range buildAll(t) {
		ds, err := m.DaemonSet()
		if err != nil {
			t.Fatal(err)
		}
		spec := ds.Spec.Template.Spec
		if !spec.HostNetwork || spec.PriorityClassName != "system-node-critical" || spec.ServiceAccountName != "switchyard" {
			t.Errorf("%s: hostNetwork=%v priorityClassName=%q serviceAccountName=%q", name, spec.HostNetwork, spec.PriorityClassName, spec.ServiceAccountName)
		}
		tolerateAll := false
		for _, tol := range spec.Tolerations {
			if tol.Key == "" && tol.Operator == v1.TolerationOpExists && tol.Effect == "" {
				tolerateAll = true
			}
		}
		if !tolerateAll {
			t.Errorf("%s: tolerations %+v do not tolerate every taint", name, spec.Tolerations)
		}
		if u := ds.Spec.UpdateStrategy; u.Type != "RollingUpdate" || u.RollingUpdate == nil || u.RollingUpdate.MaxUnavailable == nil || u.RollingUpdate.MaxUnavailable.String() != "1" {
			t.Errorf("%s: update strategy %+v, want RollingUpdate with maxUnavailable 1", name, u)
		}
		if len(spec.Containers) != 1 {
			t.Fatalf("%s: %d containers, want 1", name, len(spec.Containers))
		}
		c := &spec.Containers[0]
		if p := c.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" || p.HTTPGet.Port.IntValue() != 10256 {
			t.Errorf("%s: readiness probe %+v, want GET /healthz on 10256", name, p)
		}
		if p := c.LivenessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/livez" || p.HTTPGet.Port.IntValue() != 10256 {
			t.Errorf("%s: liveness probe %+v, want GET /livez on 10256", name, p)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
			t.Errorf("%s: resource requests %v, want cpu and memory", name, c.Resources.Requests)
		}

		argv, err := manifests.Argv(c, map[string]string{"spec.nodeName": "node-a"})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, want := range []string{"--config=/var/lib/kube-proxy/config.conf", "--hostname-override=node-a", "--proxy-mode=" + manifests.OverlayProxyMode[name]} {
			if !contains(argv, want) {
				t.Errorf("%s: command line %q lacks %s", name, argv, want)
			}
		}
		if got := contains(argv, "--pod-network=vxlan"); got != (name == "pod-network") {
			t.Errorf("%s: --pod-network=vxlan present = %v", name, got)
		}

		sc := c.SecurityContext
		if sc == nil || sc.Capabilities == nil || (sc.Privileged != nil && *sc.Privileged) ||
			sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Fatalf("%s: daemon securityContext %+v: want unprivileged, no escalation, explicit capabilities", name, sc)
		}
		wantCaps := []string{"NET_ADMIN", "NET_RAW"}
		if name == "ipvs" {
			wantCaps = append(wantCaps, "SYS_MODULE")
		}
		if got := capNames(sc.Capabilities.Add); !reflect.DeepEqual(got, wantCaps) || !reflect.DeepEqual(capNames(sc.Capabilities.Drop), []string{"ALL"}) {
			t.Errorf("%s: capabilities add %v drop %v, want add %v drop [ALL]", name, got, sc.Capabilities.Drop, wantCaps)
		}

		mounts, err := manifests.Mounts(ds, c)
		if err != nil {
			t.Fatal(err)
		}
		byPath := map[string]manifests.Mount{}
		for _, mt := range mounts {
			byPath[mt.MountPath] = mt
		}
		if mt, ok := byPath["/lib/modules"]; !ok || !mt.ReadOnly || mt.Volume.HostPath == nil || mt.Volume.HostPath.Path != "/lib/modules" {
			t.Errorf("%s: /lib/modules mount %+v, want the host's, read-only", name, mt)
		}
		if mt, ok := byPath["/run/xtables.lock"]; !ok || mt.Volume.HostPath == nil || mt.Volume.HostPath.Path != "/run/xtables.lock" {
			t.Errorf("%s: /run/xtables.lock mount %+v, want the host's lock file", name, mt)
		}
		if mt, ok := byPath["/var/lib/kube-proxy"]; !ok || mt.Volume.ConfigMap == nil || mt.Volume.ConfigMap.Name != "kube-proxy" {
			t.Errorf("%s: /var/lib/kube-proxy mount %+v, want kubeadm's kube-proxy ConfigMap", name, mt)
		}

		// No container of any overlay is privileged. The init step that writes net.* sysctls does so
		// through a hostPath mount of /proc/sys/net with NET_ADMIN (and SYS_MODULE for modprobe).
		for _, ic := range spec.InitContainers {
			isc := ic.SecurityContext
			if isc == nil || isc.Capabilities == nil || (isc.Privileged != nil && *isc.Privileged) {
				t.Errorf("%s: init container %s: securityContext %+v, want unprivileged with explicit capabilities", name, ic.Name, isc)
				continue
			}
			if ic.Name != "kernel-setup" {
				continue
			}
			if got := capNames(isc.Capabilities.Add); !reflect.DeepEqual(got, []string{"NET_ADMIN", "SYS_MODULE"}) {
				t.Errorf("%s: kernel-setup adds capabilities %v, want [NET_ADMIN SYS_MODULE]", name, got)
			}
			im, err := manifests.Mounts(ds, &ic)
			if err != nil {
				t.Fatal(err)
			}
			ok := false
			for _, mt := range im {
				if mt.MountPath == "/host/proc/sys/net" && !mt.ReadOnly && mt.Volume.HostPath != nil && mt.Volume.HostPath.Path == "/proc/sys/net" {
					ok = true
				}
			}
			if !ok {
				t.Errorf("%s: kernel-setup does not mount the host's /proc/sys/net writable at /host/proc/sys/net", name)
			}
		}
		// Every overlay writes kube-proxy's conntrack settings there (kernelsetup_test.go runs it).
		if _, err := manifests.Container(ds, "kernel-setup"); err != nil || len(spec.InitContainers) != 1 {
			t.Errorf("%s: init containers %d (%v); want kernel-setup alone", name, len(spec.InitContainers), err)
		}
	}
}

func capNames(cs []v1.Capability) []string {
	var out []string
	for _, c := range cs {
		out = append(out, string(c))
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// The daemon installs the CNI plugin and conflist itself at start-up, into --cni-bin-dir and
// --cni-conf-dir, and writes --subnet-file: each of those must be the same path on the host, mounted
// writable, or the files land in the container's (read-only) root instead of where the container
// runtime and the plugin look.
func TestPodNetworkMountsWhatTheDaemonWrites(t *testing.T) {
	m := buildAll(t)["pod-network"]
	ds, err := m.DaemonSet()
	if err != nil {
		t.Fatal(err)
	}
	c := &ds.Spec.Template.Spec.Containers[0]
	argv, err := manifests.Argv(c, map[string]string{"spec.nodeName": "node-a"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := podnet.DefaultConfig()
	fs := pflag.NewFlagSet("switchyard", pflag.ContinueOnError)
	fs.ParseErrorsWhitelist.UnknownFlags = true
	cfg.AddFlags(fs)
	if err := fs.Parse(argv[1:]); err != nil {
		t.Fatal(err)
	}
	if cfg.CNIBinDir == "" || cfg.CNIConfDir == "" {
		t.Fatalf("--cni-bin-dir=%q --cni-conf-dir=%q: the overlay relies on the daemon installing the plugin", cfg.CNIBinDir, cfg.CNIConfDir)
	}
	mounts, err := manifests.Mounts(ds, c)
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{cfg.CNIBinDir, cfg.CNIConfDir, filepath.Dir(cfg.SubnetFile)} {
		found := false
		for _, mt := range mounts {
			if mt.MountPath == dir && !mt.ReadOnly && mt.Volume.HostPath != nil && mt.Volume.HostPath.Path == dir {
				found = true
			}
		}
		if !found {
			t.Errorf("the daemon writes into %s, which is not the host's %s mounted writable at the same path", dir, dir)
		}
	}
	// The plugin the daemon installs is the one next to its own binary in the image.
	if argv[0] != "/usr/local/bin/switchyard" {
		t.Errorf("command %q: the Dockerfile puts switchyard and switchyard-cni in /usr/local/bin", argv[0])
	}
}

// The DaemonSet's command line, fed kubeadm's kube-proxy ConfigMap, is accepted by the daemon and
// yields the intended effective configuration (--write-config-to prints it). Paths under the
// ConfigMap's mount are redirected to a temporary directory; the e2e test mounts it for real.
func TestDaemonSetCommandLineIsAcceptedByTheDaemon(t *testing.T) {
	repo, err := manifests.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "switchyard")
	if out, err := exec.Command("go", "build", "-o", bin, filepath.Join(repo, "cmd", "switchyard")).CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/switchyard: %v\n%s", err, out)
	}
	cm, err := manifests.KubeadmConfigMap(repo)
	if err != nil {
		t.Fatal(err)
	}
	for name, m := range buildAll(t) {
		t.Run(name, func(t *testing.T) {
			ds, err := m.DaemonSet()
			if err != nil {
				t.Fatal(err)
			}
			argv, err := manifests.Argv(&ds.Spec.Template.Spec.Containers[0], map[string]string{"spec.nodeName": "node-a"})
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			for k, v := range cm.Data {
				if err := os.WriteFile(filepath.Join(dir, k), []byte(v), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			args := []string{}
			for _, a := range argv[1:] {
				args = append(args, strings.ReplaceAll(a, "/var/lib/kube-proxy/", dir+"/"))
			}
			out := filepath.Join(dir, "effective.yaml")
			cmd := exec.Command(bin, append(args, "--write-config-to="+out)...)
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("switchyard %s --write-config-to: %v\n%s", strings.Join(args, " "), err, b)
			}
			data, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			var eff kpconfig.KubeProxyConfiguration
			if err := sigsyaml.Unmarshal(data, &eff); err != nil {
				t.Fatal(err)
			}
			if string(eff.Mode) != manifests.OverlayProxyMode[name] || eff.HostnameOverride != "node-a" || eff.ClusterCIDR != "10.244.0.0/16" ||
				eff.ClientConnection.Kubeconfig != "/var/lib/kube-proxy/kubeconfig.conf" || eff.HealthzBindAddress != "0.0.0.0:10256" {
				t.Errorf("effective configuration: mode %q hostnameOverride %q clusterCIDR %q kubeconfig %q healthz %q; want %s, node-a, 10.244.0.0/16, the ConfigMap's kubeconfig.conf, 0.0.0.0:10256",
					eff.Mode, eff.HostnameOverride, eff.ClusterCIDR, eff.ClientConnection.Kubeconfig, eff.HealthzBindAddress, manifests.OverlayProxyMode[name])
			}
		})
	}
}
