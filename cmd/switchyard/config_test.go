package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	sigsyaml "sigs.k8s.io/yaml"
)

// configMapFile extracts one key of a ConfigMap manifest into a file, as the kubelet's volume mount
// would, and returns its path.
func configMapFile(t *testing.T, manifest, key string) string {
	t.Helper()
	data, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	var cm v1.ConfigMap
	if err := sigsyaml.UnmarshalStrict(data, &cm); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), key)
	if err := os.WriteFile(path, []byte(cm.Data[key]), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestKubeadmDefaultConfigMap(t *testing.T) {
	path := configMapFile(t, "testdata/kubeadm-kube-proxy-configmap.yaml", "config.conf")
	// kubeadm's DaemonSet passes exactly these two flags.
	opts, _, err := parseFlags([]string{"--config=" + path, "--hostname-override=node-a"})
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultOptions()
	want.ConfigFile = path
	want.Kubeconfig = "/var/lib/kube-proxy/kubeconfig.conf"
	want.ClusterCIDR = "10.244.0.0/16"
	want.HostnameOverride = "node-a"
	if !reflect.DeepEqual(opts, want) {
		t.Fatalf("effective options\n got %+v\nwant %+v", opts, want)
	}
	// kubeadm's file sets nothing Switchyard ignores: every other field holds its zero value.
	ignored, err := loadConfigFile(path, DefaultOptions())
	if err != nil || len(ignored) != 0 {
		t.Fatalf("ignored %v, err %v", ignored, err)
	}
}

func TestFlagsOverrideConfigFile(t *testing.T) {
	path := writeFile(t, `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: ipvs
clusterCIDR: 10.244.0.0/16
iptables:
  syncPeriod: 10s
  masqueradeBit: 15
ipvs:
  scheduler: lc
  excludeCIDRs: [192.168.99.0/24]
`)
	opts, _, err := parseFlags([]string{"--config", path, "--proxy-mode=iptables", "--iptables-sync-period=20s"})
	if err != nil {
		t.Fatal(err)
	}
	if opts.ProxyMode != "iptables" || opts.SyncPeriod != 20*time.Second {
		t.Errorf("flags must win: mode %q sync %v", opts.ProxyMode, opts.SyncPeriod)
	}
	if opts.MasqueradeBit != 15 || opts.IPVS.Scheduler != "lc" || opts.ClusterCIDR != "10.244.0.0/16" ||
		!reflect.DeepEqual(opts.IPVS.ExcludeCIDRs, []string{"192.168.99.0/24"}) {
		t.Errorf("file values not applied: %+v", opts)
	}
}

// TestIgnoredFieldsAreListed: of a file's fields, those Switchyard honours are applied, and the
// start-up warning lists the rest whose value asks for something: fields of kube-proxy's flags
// that Switchyard does not act on, by flag, and fields without a flag, by path.
func TestIgnoredFieldsAreListed(t *testing.T) {
	path := writeFile(t, `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
oomScoreAdj: -500
configSyncPeriod: 5m
conntrack:
  maxPerCore: 32768
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
iptables:
  localhostNodePorts: true
featureGates:
  SomeGate: true
portRange: 30000-32767
`)
	opts, _, err := parseFlags([]string{"--config=" + path})
	if err != nil {
		t.Fatal(err)
	}
	if opts.OOMScoreAdj != -500 || opts.ConfigSyncPeriod != 5*time.Minute ||
		opts.Conntrack != (ConntrackOptions{MaxPerCore: 32768, Min: 128 * 1024}) {
		t.Errorf("honoured fields not applied: %+v", opts)
	}
	want := []string{"--feature-gates", "portRange"}
	if got := settingNames(opts.IgnoredSettings()); !reflect.DeepEqual(got, want) {
		t.Fatalf("ignored = %v, want %v", got, want)
	}
}

func TestMalformedConfigNamesLineAndReason(t *testing.T) {
	for name, tc := range map[string]struct{ body, want string }{
		"syntax": {"apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: ipvs: iptables\n", "line 3: mapping values are not allowed"},
		"unknown field": {"apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\niptables:\n  syncPeriod: 5s\n  bogus: 1\n",
			`:5: unknown field "bogus"`},
		"wrong type": {"apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\niptables:\n  masqueradeBit: fourteen\n",
			":4: field iptables.masqueradeBit: wrong type"},
		"wrong kind": {"apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeletConfiguration\n", ":2: apiVersion"},
		"invalid value": {"apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: userspace\n",
			`--proxy-mode="userspace"`},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := parseFlags([]string{"--config=" + writeFile(t, tc.body)})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestWriteConfigRoundTrips(t *testing.T) {
	for _, args := range [][]string{
		{"--proxy-mode=ipvs", "--cluster-cidr=10.244.0.0/16", "--ipvs-scheduler=wlc", "--masquerade-all"},
		{"--detect-local-mode=BridgeInterface", "--pod-bridge-interface=cbr0"},
		{"--detect-local-mode=InterfaceNamePrefix", "--pod-interface-name-prefix=cali"},
		// Every setting of kube-proxy's flags has a field, honoured or not.
		{"--kube-api-qps=20", "--kube-api-burst=40", "--kube-api-content-type=application/json", "--config-sync-period=5m",
			"--oom-score-adj=-500", "--log-flush-frequency=2s", "--log-text-split-stream", "--log-text-info-buffer-size=1Ki",
			"--log-json-split-stream", "--log-json-info-buffer-size=2Ki", "--bind-address=10.0.0.1", "--bind-address-hard-fail",
			"--feature-gates=A=true,B=false", "--show-hidden-metrics-for-version=1.36", "--iptables-localhost-nodeports=false",
			"--pod-bridge-interface=cni0", "--pod-interface-name-prefix=veth", "--conntrack-max-per-core=0", "--conntrack-min=7",
			"--conntrack-tcp-timeout-established=0s", "--conntrack-tcp-timeout-close-wait=2h", "--conntrack-tcp-be-liberal",
			"--conntrack-udp-timeout=30s", "--conntrack-udp-timeout-stream=2m"},
	} {
		opts, _, err := parseFlags(args)
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(t.TempDir(), "effective.yaml")
		if err := writeConfig(opts, out); err != nil {
			t.Fatal(err)
		}
		back, _, err := parseFlags([]string{"--config=" + out})
		if err != nil {
			t.Fatal(err)
		}
		back.ConfigFile = ""
		if !reflect.DeepEqual(back, opts) {
			t.Fatalf("round trip\n got %+v\nwant %+v", back, opts)
		}
	}
}

func TestValidateRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--proxy-mode=userspace"},
		{"--iptables-masquerade-bit=32"},
		{"--cluster-cidr=10.244.0.0/33"},
		{"--nodeport-addresses=not-a-cidr"},
		{"--iptables-sync-period=0s"},
		{"--iptables-min-sync-period=1m", "--iptables-sync-period=30s"},
		{"--iptables-variant=xtables"},
		{"--proxy-mode=ipvs", "--ipvs-scheduler=foo"},
		{"--proxy-mode=ipvs", "--ipvs-min-sync-period=1m", "--ipvs-sync-period=30s"},
		{"--logging-format=json"},
		{"--oom-score-adj=1001"},
		{"--config-sync-period=0s"},
		{"--kube-api-burst=-1"},
		{"--bind-address=not-an-ip"},
		{"--feature-gates=SomeGate"},
		{"--conntrack-min=-1"},
		{"--log-text-info-buffer-size=lots"},
		{"--version=maybe"},
	} {
		if _, _, err := parseFlags(args); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

func TestPodNetworkTakesClusterCIDR(t *testing.T) {
	_, pcfg, err := parseFlags([]string{"--pod-network=vxlan", "--cluster-cidr=10.244.0.0/16"})
	if err != nil {
		t.Fatal(err)
	}
	if !pcfg.Enabled() || pcfg.ClusterCIDR != "10.244.0.0/16" {
		t.Fatalf("pod network config %+v", pcfg)
	}
}
