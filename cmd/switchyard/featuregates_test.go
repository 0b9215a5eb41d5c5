package main

import (
	"strings"
	"testing"
)

// kube-proxy's gates that change behaviour are honoured; the warning lists only the others.
func TestFeatureGates(t *testing.T) {
	for _, tc := range []struct {
		args        []string
		ignoreExt   bool
		warned      bool // --feature-gates in the ignored-settings warning
		errContains string
	}{
		{args: nil},
		{args: []string{"--feature-gates=AllowServiceExternalIPs=false"}, ignoreExt: true},
		{args: []string{"--feature-gates=AllowServiceExternalIPs=true"}},
		{args: []string{"--feature-gates=AllowServiceExternalIPs=false,PreferSameTrafficDistribution=true"}, ignoreExt: true, warned: true},
		{args: []string{"--feature-gates=KubeProxyIPVS=false"}},
		{args: []string{"--proxy-mode=ipvs", "--feature-gates=KubeProxyIPVS=false"}, errContains: "KubeProxyIPVS feature gate is off"},
		{args: []string{"--proxy-mode=ipvs", "--feature-gates=KubeProxyIPVS=true"}},
	} {
		opts, _, err := parseFlags(append(tc.args, "--hostname-override=node-a"))
		if tc.errContains != "" {
			if err == nil || !strings.Contains(err.Error(), tc.errContains) {
				t.Errorf("%v: error %v, want one saying %q", tc.args, err, tc.errContains)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if got := opts.gateOff(gateExternalIPs); got != tc.ignoreExt {
			t.Errorf("%v: external IPs ignored %v, want %v", tc.args, got, tc.ignoreExt)
		}
		if got := strings.Contains(strings.Join(opts.IgnoredSettings(), "\n"), "--feature-gates"); got != tc.warned {
			t.Errorf("%v: --feature-gates in the warning %v, want %v: %q", tc.args, got, tc.warned, opts.IgnoredSettings())
		}
	}
}
