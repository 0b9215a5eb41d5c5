package main

import (
	"fmt"

	"github.com/spf13/pflag"
)

// ignoredSetting is a kube-proxy setting that Switchyard accepts, so that a kube-proxy DaemonSet's
// command line and ConfigMap work unchanged, but does not act on. Every kube-proxy flag that is not
// listed here is honoured.
type ignoredSetting struct {
	flag  string // kube-proxy's flag
	field string // its KubeProxyConfiguration field (JSON path), if it has one
	why   string
	// matters says whether o's value asks kube-proxy for something Switchyard does not do. Values
	// that ask for nothing (an empty list, a "leave it as it is" 0) are not worth a warning.
	matters func(o *Options) bool
}

const ignoredReason = "accepted and ignored: "

var ignoredSettings = []ignoredSetting{
	{"bind-address", "bindAddress", ignoredReason + "kube-proxy takes it as the node's primary IP, to pick the primary IP family; Switchyard is IPv4-only, reads the node's addresses from its interfaces, and uses it only for --nodeport-addresses=primary",
		func(o *Options) bool {
			_, primary, _ := o.NodePortPrefixes()
			return o.BindAddress != "0.0.0.0" && !primary
		}},
	{"bind-address-hard-fail", "bindAddressHardFail", ignoredReason + "Switchyard never exits on a busy port: its health, metrics and health check node port servers retry every 5s (during a migration kube-proxy may still hold the port)",
		func(o *Options) bool { return o.BindAddressHardFail }},
	{"feature-gates", "featureGates", ignoredReason + "Switchyard acts on AllowServiceExternalIPs and KubeProxyIPVS only; kube-proxy's other gates are locked on, or belong to its nftables mode",
		func(o *Options) bool { return len(o.ignoredGates()) > 0 }},
	{"show-hidden-metrics-for-version", "showHiddenMetricsForVersion", ignoredReason + "Switchyard hides none of its metrics",
		func(o *Options) bool { return o.ShowHiddenMetricsForVersion != "" }},
	{"healthz-port", "", ignoredReason + "--healthz-bind-address names a port, which wins, as in kube-proxy",
		func(o *Options) bool { return portIgnored(o.HealthzPort, 10256, o.HealthzBindAddress) }},
	{"metrics-port", "", ignoredReason + "--metrics-bind-address names a port, which wins, as in kube-proxy",
		func(o *Options) bool { return portIgnored(o.MetricsPort, 10249, o.MetricsBindAddress) }},
	{"version", "", ignoredReason + "Switchyard reports its own version",
		func(o *Options) bool { return o.Version != "false" && o.Version != "true" && o.Version != "raw" }},
	{"log-text-split-stream", "logging.options.text.splitStream", ignoredReason + "Switchyard writes all its logs to stderr",
		func(o *Options) bool { return o.Logging.TextSplitStream }},
	{"log-text-info-buffer-size", "logging.options.text.infoBufferSize", ignoredReason + "Switchyard does not buffer its logs",
		func(o *Options) bool { return nonZeroQuantity(o.Logging.TextInfoBufferSize) }},
	{"log-json-split-stream", "logging.options.json.splitStream", ignoredReason + "Switchyard writes only text logs",
		func(o *Options) bool { return o.Logging.JSONSplitStream }},
	{"log-json-info-buffer-size", "logging.options.json.infoBufferSize", ignoredReason + "Switchyard writes only text logs",
		func(o *Options) bool { return nonZeroQuantity(o.Logging.JSONInfoBufferSize) }},
}

// portIgnored: a deprecated port flag set to something other than its default that did not end up
// in its bind address.
func portIgnored(port, def int32, addr string) bool {
	return port != 0 && port != def && portOf(addr) != port
}

// IgnoredSettings lists, one line each, the settings of o that kube-proxy would act on and
// Switchyard does not: the flags of ignoredSettings whose value matters, then the configuration
// file's fields that have no flag. main logs them once, in one warning.
func (o *Options) IgnoredSettings() []string {
	fs := pflag.NewFlagSet("ignored", pflag.ContinueOnError)
	o.AddFlags(fs)
	var out []string
	for _, s := range ignoredSettings {
		if !s.matters(o) {
			continue
		}
		line := fmt.Sprintf("--%s=%s", s.flag, fs.Lookup(s.flag).Value)
		if s.field != "" {
			line += " (" + s.field + ")"
		}
		out = append(out, line+": "+s.why)
	}
	for _, f := range o.fileFieldsIgnored {
		out = append(out, f+" (in --config): "+ignoredReason+"Switchyard has no use for this KubeProxyConfiguration field")
	}
	return out
}
