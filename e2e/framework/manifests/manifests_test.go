package manifests

import (
	"strings"
	"testing"
)

// expand does what the kubelet does to a container's command and args: $(VAR) from the env, $$ for a
// literal $, and a $(...) that names no variable (shell command substitution, arithmetic) left as it
// is. Unlike the kubelet it refuses a variable's name the env lacks, since in a manifest that is a typo.
func TestExpandAsTheKubeletDoes(t *testing.T) {
	env := map[string]string{"NODE_NAME": "node-1"}
	for _, tc := range []struct{ in, want, wantErr string }{
		{in: "--hostname-override=$(NODE_NAME)", want: "--hostname-override=node-1"},
		{in: "echo $$(NODE_NAME) $$HOME", want: "echo $(NODE_NAME) $HOME"},
		{in: `for r in $(tr , ' ' < /sys/devices/system/cpu/online); do :; done`, want: `for r in $(tr , ' ' < /sys/devices/system/cpu/online); do :; done`},
		{in: "max=$((32768 * cpus)); q=$((max / 4))", want: "max=$((32768 * cpus)); q=$((max / 4))"},
		{in: `[ "$(cat "$ct/nf_conntrack_max")" -ge "$max" ]`, want: `[ "$(cat "$ct/nf_conntrack_max")" -ge "$max" ]`},
		{in: "--hostname-override=$(NODE_NAM)", wantErr: "$(NODE_NAM) is not in the container's env"},
		{in: "$(unterminated", wantErr: "unterminated"},
	} {
		got, err := expand(tc.in, env)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("expand(%q) = %q, %v; want an error with %q", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("expand(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}
