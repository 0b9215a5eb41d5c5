package main

import (
	"strings"
	"testing"
)

// TestDetectLocalInterfaceModes: --detect-local-mode BridgeInterface and InterfaceNamePrefix, from
// flags or from kube-proxy's configuration file, reach both backends, and the interface flags are
// no longer reported as ignored.
func TestDetectLocalInterfaceModes(t *testing.T) {
	const header = "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nclusterCIDR: 10.244.0.0/16\n"
	for _, tc := range []struct {
		name           string
		args           []string
		bridge, prefix string
	}{
		{"bridge flags", []string{"--detect-local-mode=BridgeInterface", "--pod-bridge-interface=cbr0"}, "cbr0", ""},
		{"prefix flags", []string{"--detect-local-mode=InterfaceNamePrefix", "--pod-interface-name-prefix=cali"}, "", "cali"},
		{"bridge file", []string{"--config=" + writeFile(t, header+"detectLocalMode: BridgeInterface\ndetectLocal:\n  bridgeInterface: cni0\n")}, "cni0", ""},
		{"prefix file", []string{"--config=" + writeFile(t, header+"detectLocalMode: InterfaceNamePrefix\ndetectLocal:\n  interfaceNamePrefix: veth\n")}, "", "veth"},
		// The interface flags count only in their own mode, as in kube-proxy.
		{"bridge flag in ClusterCIDR mode", []string{"--pod-bridge-interface=cni0", "--pod-interface-name-prefix=veth"}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts, _, err := parseFlags(tc.args)
			if err != nil {
				t.Fatal(err)
			}
			d := iptablesOptions(opts).LocalDetector
			if d.BridgeInterface != tc.bridge || d.InterfaceNamePrefix != tc.prefix {
				t.Errorf("iptables detector %+v, want bridge %q prefix %q", d, tc.bridge, tc.prefix)
			}
			if v := ipvsOptions(opts); v.BridgeInterface != tc.bridge || v.InterfaceNamePrefix != tc.prefix {
				t.Errorf("IPVS detector: bridge %q prefix %q, want %q %q", v.BridgeInterface, v.InterfaceNamePrefix, tc.bridge, tc.prefix)
			}
			for _, l := range opts.IgnoredSettings() {
				if strings.Contains(l, "pod-bridge-interface") || strings.Contains(l, "pod-interface-name-prefix") {
					t.Errorf("reported as ignored: %s", l)
				}
			}
		})
	}
}

func TestDetectLocalInterfaceModesValidate(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--detect-local-mode=BridgeInterface"}, "--pod-bridge-interface"},
		{[]string{"--detect-local-mode=InterfaceNamePrefix", "--pod-bridge-interface=cni0"}, "--pod-interface-name-prefix"},
		{[]string{"--detect-local-mode=Interface"}, "'BridgeInterface' or 'InterfaceNamePrefix'"},
	} {
		if _, _, err := parseFlags(tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one naming %s", tc.args, err, tc.want)
		}
	}
	// kube-proxy takes an empty mode for ClusterCIDR.
	opts, _, err := parseFlags([]string{"--detect-local-mode=", "--cluster-cidr=10.244.0.0/16"})
	if err != nil {
		t.Fatal(err)
	}
	if d := iptablesOptions(opts).LocalDetector; len(d.ClusterCIDRs) != 1 || d.UseNodeCIDR || d.BridgeInterface != "" {
		t.Errorf("empty mode: detector %+v, want the cluster CIDR", d)
	}
}
