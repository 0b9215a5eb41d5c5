package main

import (
	"fmt"
	"maps"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kpconfig "k8s.io/kube-proxy/config/v1alpha1"
	"k8s.io/utils/ptr"
	sigsyaml "sigs.k8s.io/yaml"
)

const (
	configAPIVersion = "kubeproxy.config.k8s.io/v1alpha1"
	configKind       = "KubeProxyConfiguration"
)

// mappedFields are the KubeProxyConfiguration fields (JSON paths; a path covers what is under it)
// that map onto Options, as kube-proxy's flags map onto them; Options.IgnoredSettings says which of
// those Switchyard does not act on. Every other field that a file sets to a non-zero value is
// listed at start-up as ignored, so an operator reusing kube-proxy's ConfigMap sees exactly what
// does not carry over.
var mappedFields = map[string]bool{
	"apiVersion": true, "kind": true,
	"clientConnection.kubeconfig":  true,
	"clientConnection.qps":         true,
	"clientConnection.burst":       true,
	"clientConnection.contentType": true,
	"configSyncPeriod":             true,
	"hostnameOverride":             true,
	"bindAddress":                  true,
	"bindAddressHardFail":          true,
	"healthzBindAddress":           true,
	"metricsBindAddress":           true,
	"enableProfiling":              true,
	"showHiddenMetricsForVersion":  true,
	"featureGates":                 true,
	"oomScoreAdj":                  true,
	"mode":                         true,
	"clusterCIDR":                  true,
	"detectLocalMode":              true,
	"detectLocal":                  true,
	"nodePortAddresses":            true,
	"conntrack":                    true,
	"logging.format":               true,
	"logging.flushFrequency":       true,
	"logging.options":              true,
	"iptables.masqueradeAll":       true,
	"iptables.masqueradeBit":       true,
	"iptables.syncPeriod":          true,
	"iptables.minSyncPeriod":       true,
	"iptables.localhostNodePorts":  true,
	"ipvs.syncPeriod":              true,
	"ipvs.minSyncPeriod":           true,
	"ipvs.scheduler":               true,
	"ipvs.excludeCIDRs":            true,
	"ipvs.strictARP":               true,
	"ipvs.tcpTimeout":              true,
	"ipvs.tcpFinTimeout":           true,
	"ipvs.udpTimeout":              true,
}

// loadConfigFile applies the KubeProxyConfiguration in path onto o and returns the fields it set
// that map onto no Options field. Zero values mean "kube-proxy's default", exactly as kube-proxy's own
// defaulting treats them, so a kubeadm-written file with its many empty fields changes nothing it
// does not mean to. A malformed file is an error naming the line and the reason.
func loadConfigFile(path string, o *Options) (ignored []string, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--config: %w", err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("--config %s: %w", path, err)
	}
	var cfg kpconfig.KubeProxyConfiguration
	if err := sigsyaml.UnmarshalStrict(data, &cfg); err != nil {
		return nil, fmt.Errorf("--config %s:%s", path, describeDecodeError(&root, err))
	}
	if cfg.APIVersion != configAPIVersion || cfg.Kind != configKind {
		return nil, fmt.Errorf("--config %s:%d: apiVersion %q, kind %q: want %s %s", path,
			lineOf(&root, "kind"), cfg.APIVersion, cfg.Kind, configAPIVersion, configKind)
	}
	applyConfig(&cfg, o)
	return ignoredFields(&cfg), nil
}

func applyConfig(c *kpconfig.KubeProxyConfiguration, o *Options) {
	setString(&o.Kubeconfig, c.ClientConnection.Kubeconfig)
	setString(&o.HostnameOverride, c.HostnameOverride)
	setString(&o.HealthzBindAddress, c.HealthzBindAddress)
	setString(&o.MetricsBindAddress, c.MetricsBindAddress)
	if c.EnableProfiling {
		o.EnableProfiling = true
	}
	setString(&o.ProxyMode, string(c.Mode))
	setString(&o.ClusterCIDR, c.ClusterCIDR)
	setString(&o.DetectLocalMode, string(c.DetectLocalMode))
	if len(c.NodePortAddresses) > 0 {
		o.NodePortAddresses = append([]string(nil), c.NodePortAddresses...)
	}
	if c.IPTables.MasqueradeAll {
		o.MasqueradeAll = true
	}
	if c.IPTables.MasqueradeBit != nil {
		o.MasqueradeBit = *c.IPTables.MasqueradeBit
	}
	setDuration(&o.SyncPeriod, c.IPTables.SyncPeriod.Duration)
	setDuration(&o.MinSyncPeriod, c.IPTables.MinSyncPeriod.Duration)
	setDuration(&o.IPVS.SyncPeriod, c.IPVS.SyncPeriod.Duration)
	setDuration(&o.IPVS.MinSyncPeriod, c.IPVS.MinSyncPeriod.Duration)
	setString(&o.IPVS.Scheduler, c.IPVS.Scheduler)
	if len(c.IPVS.ExcludeCIDRs) > 0 {
		o.IPVS.ExcludeCIDRs = append([]string(nil), c.IPVS.ExcludeCIDRs...)
	}
	if c.IPVS.StrictARP {
		o.IPVS.StrictARP = true
	}
	setDuration(&o.IPVS.TCPTimeout, c.IPVS.TCPTimeout.Duration)
	setDuration(&o.IPVS.TCPFinTimeout, c.IPVS.TCPFinTimeout.Duration)
	setDuration(&o.IPVS.UDPTimeout, c.IPVS.UDPTimeout.Duration)

	if c.ClientConnection.QPS != 0 {
		o.KubeAPIQPS = c.ClientConnection.QPS
	}
	if c.ClientConnection.Burst != 0 {
		o.KubeAPIBurst = c.ClientConnection.Burst
	}
	setString(&o.KubeAPIContentType, c.ClientConnection.ContentType)
	setDuration(&o.ConfigSyncPeriod, c.ConfigSyncPeriod.Duration)
	if c.OOMScoreAdj != nil {
		o.OOMScoreAdj = *c.OOMScoreAdj
	}
	setString(&o.Logging.Format, c.Logging.Format)
	setDuration(&o.Logging.FlushFrequency, c.Logging.FlushFrequency.Duration.Duration)
	applyLoggingOptions(c, o)
	setString(&o.BindAddress, c.BindAddress)
	if c.BindAddressHardFail {
		o.BindAddressHardFail = true
	}
	if len(c.FeatureGates) > 0 {
		o.FeatureGates = maps.Clone(c.FeatureGates)
	}
	setString(&o.ShowHiddenMetricsForVersion, c.ShowHiddenMetricsForVersion)
	if c.IPTables.LocalhostNodePorts != nil {
		o.LocalhostNodePorts = *c.IPTables.LocalhostNodePorts
	}
	setString(&o.PodBridgeInterface, c.DetectLocal.BridgeInterface)
	setString(&o.PodInterfaceNamePrefix, c.DetectLocal.InterfaceNamePrefix)
	applyConntrack(&c.Conntrack, &o.Conntrack)
}

// applyConntrack: nil pointers are kube-proxy's defaults; a set pointer to 0 means "leave as is".
func applyConntrack(c *kpconfig.KubeProxyConntrackConfiguration, o *ConntrackOptions) {
	if c.MaxPerCore != nil {
		o.MaxPerCore = *c.MaxPerCore
	}
	if c.Min != nil {
		o.Min = *c.Min
	}
	if c.TCPEstablishedTimeout != nil {
		o.TCPEstablishedTimeout = c.TCPEstablishedTimeout.Duration
	}
	if c.TCPCloseWaitTimeout != nil {
		o.TCPCloseWaitTimeout = c.TCPCloseWaitTimeout.Duration
	}
	if c.TCPBeLiberal {
		o.TCPBeLiberal = true
	}
	setDuration(&o.UDPTimeout, c.UDPTimeout.Duration)
	setDuration(&o.UDPStreamTimeout, c.UDPStreamTimeout.Duration)
}

func applyLoggingOptions(c *kpconfig.KubeProxyConfiguration, o *Options) {
	text, json := &c.Logging.Options.Text, &c.Logging.Options.JSON
	if text.SplitStream {
		o.Logging.TextSplitStream = true
	}
	if !text.InfoBufferSize.IsZero() {
		o.Logging.TextInfoBufferSize = text.InfoBufferSize.String()
	}
	if json.SplitStream {
		o.Logging.JSONSplitStream = true
	}
	if !json.InfoBufferSize.IsZero() {
		o.Logging.JSONInfoBufferSize = json.InfoBufferSize.String()
	}
}

func setString(dst *string, v string) {
	if v != "" {
		*dst = v
	}
}

func setDuration(dst *time.Duration, v time.Duration) {
	if v != 0 {
		*dst = v
	}
}

// ignoredFields lists, by JSON path, every field of c that holds a non-zero value and maps onto no
// Options field.
func ignoredFields(c *kpconfig.KubeProxyConfiguration) []string {
	var out []string
	var walk func(v reflect.Value, path string)
	walk = func(v reflect.Value, path string) {
		if mappedFields[path] {
			return
		}
		if v.Kind() == reflect.Struct && v.Type().String() != "v1.Duration" {
			for i := 0; i < v.NumField(); i++ {
				f := v.Type().Field(i)
				name := strings.Split(f.Tag.Get("json"), ",")[0]
				if f.Anonymous || name == "" || name == "-" {
					continue
				}
				p := name
				if path != "" {
					p = path + "." + name
				}
				walk(v.Field(i), p)
			}
			return
		}
		if !v.IsZero() {
			out = append(out, path)
		}
	}
	walk(reflect.ValueOf(*c), "")
	sort.Strings(out)
	return out
}

var (
	unknownFieldRE = regexp.MustCompile(`unknown field "([^"]+)"`)
	typeFieldRE    = regexp.MustCompile(`Go struct field [A-Za-z0-9]+\.([A-Za-z0-9.]+) of type (\S+)`)
)

// describeDecodeError turns a JSON decoding error about the YAML document into "LINE: reason".
func describeDecodeError(root *yaml.Node, err error) string {
	msg := err.Error()
	if m := unknownFieldRE.FindStringSubmatch(msg); m != nil {
		return fmt.Sprintf("%d: unknown field %q (is this a KubeProxyConfiguration?)", lineOf(root, m[1]), m[1])
	}
	if m := typeFieldRE.FindStringSubmatch(msg); m != nil {
		return fmt.Sprintf("%d: field %s: wrong type, want %s", lineOf(root, m[1]), m[1], m[2])
	}
	return " " + msg
}

// lineOf finds the line of a dotted key path, or of the last key of that name anywhere when the
// path does not resolve (strict decoding reports unknown fields by bare name). 0 when not found.
func lineOf(root *yaml.Node, path string) int {
	if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		root = root.Content[0]
	}
	node, line := root, 0
	for _, key := range strings.Split(path, ".") {
		var k *yaml.Node
		if k, node = entryOf(node, key); k == nil {
			line = 0
			break
		}
		line = k.Line
	}
	if line != 0 {
		return line
	}
	last := path[strings.LastIndex(path, ".")+1:]
	return findKey(root, last)
}

// entryOf returns the key and value nodes of key in mapping n, or nils.
func entryOf(n *yaml.Node, key string) (k, v *yaml.Node) {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i], n.Content[i+1]
		}
	}
	return nil, nil
}

func findKey(n *yaml.Node, key string) int {
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				return n.Content[i].Line
			}
		}
	}
	for _, c := range n.Content {
		if l := findKey(c, key); l != 0 {
			return l
		}
	}
	return 0
}

// effectiveConfig expresses o as a KubeProxyConfiguration, for --write-config-to.
func effectiveConfig(o *Options) *kpconfig.KubeProxyConfiguration {
	c := &kpconfig.KubeProxyConfiguration{}
	c.APIVersion, c.Kind = configAPIVersion, configKind
	c.ClientConnection.Kubeconfig = o.Kubeconfig
	c.HostnameOverride = o.HostnameOverride
	c.HealthzBindAddress = o.HealthzBindAddress
	c.MetricsBindAddress = o.MetricsBindAddress
	c.EnableProfiling = o.EnableProfiling
	c.Mode = kpconfig.ProxyMode(o.ProxyMode)
	c.ClusterCIDR = o.ClusterCIDR
	c.DetectLocalMode = kpconfig.LocalMode(o.DetectLocalMode)
	c.NodePortAddresses = o.NodePortAddresses
	c.IPTables.MasqueradeAll = o.MasqueradeAll
	bit := o.MasqueradeBit
	c.IPTables.MasqueradeBit = &bit
	c.IPTables.SyncPeriod.Duration = o.SyncPeriod
	c.IPTables.MinSyncPeriod.Duration = o.MinSyncPeriod
	c.IPVS.SyncPeriod.Duration = o.IPVS.SyncPeriod
	c.IPVS.MinSyncPeriod.Duration = o.IPVS.MinSyncPeriod
	c.IPVS.Scheduler = o.IPVS.Scheduler
	c.IPVS.ExcludeCIDRs = o.IPVS.ExcludeCIDRs
	c.IPVS.StrictARP = o.IPVS.StrictARP
	c.IPVS.TCPTimeout.Duration = o.IPVS.TCPTimeout
	c.IPVS.TCPFinTimeout.Duration = o.IPVS.TCPFinTimeout
	c.IPVS.UDPTimeout.Duration = o.IPVS.UDPTimeout

	c.ClientConnection.QPS = o.KubeAPIQPS
	c.ClientConnection.Burst = o.KubeAPIBurst
	c.ClientConnection.ContentType = o.KubeAPIContentType
	c.ConfigSyncPeriod.Duration = o.ConfigSyncPeriod
	c.OOMScoreAdj = ptr.To(o.OOMScoreAdj)
	c.Logging.Format = o.Logging.Format
	c.Logging.FlushFrequency.Duration.Duration = o.Logging.FlushFrequency
	c.Logging.FlushFrequency.SerializeAsString = true
	c.Logging.Options.Text.SplitStream = o.Logging.TextSplitStream
	c.Logging.Options.Text.InfoBufferSize.Quantity = quantity(o.Logging.TextInfoBufferSize)
	c.Logging.Options.JSON.SplitStream = o.Logging.JSONSplitStream
	c.Logging.Options.JSON.InfoBufferSize.Quantity = quantity(o.Logging.JSONInfoBufferSize)
	c.BindAddress = o.BindAddress
	c.BindAddressHardFail = o.BindAddressHardFail
	c.FeatureGates = o.FeatureGates
	c.ShowHiddenMetricsForVersion = o.ShowHiddenMetricsForVersion
	c.IPTables.LocalhostNodePorts = ptr.To(o.LocalhostNodePorts)
	c.DetectLocal.BridgeInterface = o.PodBridgeInterface
	c.DetectLocal.InterfaceNamePrefix = o.PodInterfaceNamePrefix
	ct := &c.Conntrack
	ct.MaxPerCore, ct.Min = ptr.To(o.Conntrack.MaxPerCore), ptr.To(o.Conntrack.Min)
	ct.TCPEstablishedTimeout = &metav1.Duration{Duration: o.Conntrack.TCPEstablishedTimeout}
	ct.TCPCloseWaitTimeout = &metav1.Duration{Duration: o.Conntrack.TCPCloseWaitTimeout}
	ct.TCPBeLiberal = o.Conntrack.TCPBeLiberal
	ct.UDPTimeout.Duration = o.Conntrack.UDPTimeout
	ct.UDPStreamTimeout.Duration = o.Conntrack.UDPStreamTimeout
	return c
}

// quantity parses a quantity the flag has already checked; "" is zero.
func quantity(s string) resource.Quantity {
	q, _ := resource.ParseQuantity(s)
	return q
}

func writeConfig(o *Options, path string) error {
	data, err := sigsyaml.Marshal(effectiveConfig(o))
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("--write-config-to: %w", err)
	}
	return nil
}
