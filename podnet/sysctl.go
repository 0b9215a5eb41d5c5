package podnet

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Sysctl writes kernel parameters of the node's network namespace.
type Sysctl interface {
	Set(name, value string) error
}

// ProcSysctl writes /proc/sys, which for net.* resolves to the network namespace of the writing thread.
type ProcSysctl struct {
	// Do, if set, runs the write (e.g. inside a test namespace); nil runs it directly.
	Do func(func() error) error
}

var _ Sysctl = (*ProcSysctl)(nil)

func (p *ProcSysctl) Set(name, value string) error {
	path := filepath.Join("/proc/sys", strings.ReplaceAll(name, ".", "/"))
	write := func() error {
		cur, err := os.ReadFile(path)
		if err == nil && strings.TrimSpace(string(cur)) == value {
			return nil
		}
		return os.WriteFile(path, []byte(value), 0o644)
	}
	var err error
	if p.Do != nil {
		err = p.Do(write)
	} else {
		err = write()
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("sysctl %s=%s: permission denied (needs CAP_NET_ADMIN and a writable /proc/sys): %w", name, value, err)
	default:
		return fmt.Errorf("sysctl %s=%s: %w", name, value, err)
	}
}

// Required and optional forwarding settings.
const (
	sysctlForward   = "net.ipv4.ip_forward"
	sysctlBridgeNF  = "net.bridge.bridge-nf-call-iptables"
	forwardingValue = "1"
)

// setForwarding enables IPv4 forwarding (required) and iptables on bridged traffic (best effort: the
// key exists only when br_netfilter is loaded). The returned warning, if any, is for the log.
func setForwarding(s Sysctl) (warning string, err error) {
	if err := s.Set(sysctlForward, forwardingValue); err != nil {
		return "", err
	}
	if err := s.Set(sysctlBridgeNF, forwardingValue); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "br_netfilter is not loaded: Service traffic between pods on one node bypasses iptables", nil
		}
		return err.Error(), nil
	}
	return "", nil
}
