// Package sysctl reads and writes kernel parameters: the seam the IPVS backend's settings and
// kube-proxy's conntrack settings go through. Proc is the real one; sysctltest.Fake is its fake.
package sysctl

import (
	"os"
	"path/filepath"
	"strings"
)

// Interface reads and writes kernel parameters by name: a path under /proc/sys
// ("net/netfilter/nf_conntrack_max"), or an absolute path for a module parameter under /sys
// ("/sys/module/nf_conntrack/parameters/hashsize").
type Interface interface {
	Get(name string) (string, error)
	Set(name, value string) error
}

// Proc is the real Interface. net/* names resolve to the network namespace of the calling thread.
type Proc struct{}

var _ Interface = Proc{}

func (Proc) path(name string) string {
	if filepath.IsAbs(name) {
		return name
	}
	return filepath.Join("/proc/sys", name)
}

func (p Proc) Get(name string) (string, error) {
	b, err := os.ReadFile(p.path(name))
	return strings.TrimSpace(string(b)), err
}

func (p Proc) Set(name, value string) error {
	return os.WriteFile(p.path(name), []byte(value+"\n"), 0o644)
}
