// Package cni is the switchyard-cni plugin (CNI spec 1.0): it connects a pod to the node's bridge with
// a veth pair and gives it an address from the node's pod CIDR, which it learns from the subnet file
// the Switchyard daemon writes. cmd/switchyard-cni is only its main.
package cni

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/switchyard/switchyard/podnet/subnet"
)

// Defaults of the plugin configuration.
const (
	DefaultBridge  = "cni0"
	DefaultDataDir = "/var/lib/cni/switchyard"
	PluginType     = "switchyard-cni"
	NetworkName    = "switchyard"
)

// SupportedVersions are the CNI spec versions the plugin accepts in its configuration.
var SupportedVersions = version.PluginSupports("0.4.0", "1.0.0")

// NetConf is the plugin's configuration (one entry of a conflist).
type NetConf struct {
	types.PluginConf
	// Bridge is the node bridge pods attach to; created if missing.
	Bridge string `json:"bridge,omitempty"`
	// SubnetFile is written by the daemon (see podnet/subnet).
	SubnetFile string `json:"subnetFile,omitempty"`
	// DataDir holds the address allocations, one directory per network name.
	DataDir string `json:"dataDir,omitempty"`
	// HairpinMode lets a pod reach itself through a Service; on unless set to false.
	HairpinMode *bool `json:"hairpinMode,omitempty"`
	// MTU overrides the pod MTU from the subnet file.
	MTU int `json:"mtu,omitempty"`
}

// Hairpin reports whether hairpin mode is on.
func (c *NetConf) Hairpin() bool { return c.HairpinMode == nil || *c.HairpinMode }

// ParseConf decodes and validates the configuration; errors are CNI errors with the spec's codes.
func ParseConf(data []byte) (*NetConf, error) {
	conf := &NetConf{}
	if err := json.Unmarshal(data, conf); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "cannot decode the network configuration", err.Error())
	}
	if conf.Bridge == "" {
		conf.Bridge = DefaultBridge
	}
	if conf.SubnetFile == "" {
		conf.SubnetFile = subnet.DefaultPath
	}
	if conf.DataDir == "" {
		conf.DataDir = DefaultDataDir
	}
	bad := func(format string, args ...any) error {
		return types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf(format, args...), "")
	}
	switch {
	case conf.Name == "":
		return nil, bad("network configuration has no name")
	case strings.ContainsAny(conf.Name, "/\\") || conf.Name == "." || conf.Name == "..":
		return nil, bad("network name %q cannot contain path separators", conf.Name)
	case !validIfName(conf.Bridge):
		return nil, bad("bridge name %q is not a valid interface name", conf.Bridge)
	case !filepath.IsAbs(conf.SubnetFile):
		return nil, bad("subnetFile %q must be an absolute path", conf.SubnetFile)
	case !filepath.IsAbs(conf.DataDir):
		return nil, bad("dataDir %q must be an absolute path", conf.DataDir)
	case conf.MTU != 0 && (conf.MTU < 576 || conf.MTU > 65535):
		return nil, bad("mtu %d out of range 576-65535", conf.MTU)
	}
	if conf.RawPrevResult != nil {
		if err := version.ParsePrevResult(&conf.PluginConf); err != nil {
			return nil, types.NewError(types.ErrDecodingFailure, "cannot parse prevResult", err.Error())
		}
	}
	return conf, nil
}

// validIfName applies the kernel's rules for interface names.
func validIfName(name string) bool {
	if name == "" || len(name) > 15 || name == "." || name == ".." {
		return false
	}
	return !strings.ContainsAny(name, "/: \t\n")
}
