// Package sysctltest holds the stateful fake of /proc/sys: the fake of internal/sysctl's Interface,
// which the IPVS backend and the conntrack settings use, and of the pod network's (podnet.Sysctl),
// which declares only the method it calls (Set); Fake has both.
package sysctltest

import (
	"fmt"
	"os"
)

// Fake is an in-memory /proc/sys. Names are kept as the caller spells them ("net/ipv4/vs/conntrack"
// or "net.ipv4.ip_forward"). A name not in Values does not exist, as when its module is not loaded:
// reading or setting it fails with os.ErrNotExist. Setting a name in ReadOnly fails with
// os.ErrPermission, as in an unprivileged container. Errors name the sysctl, as the real ones do.
type Fake struct {
	Values   map[string]string
	ReadOnly map[string]bool
}

// New returns a Fake holding values (not copied).
func New(values map[string]string) *Fake {
	return &Fake{Values: values, ReadOnly: map[string]bool{}}
}

func (f *Fake) Get(name string) (string, error) {
	v, ok := f.Values[name]
	if !ok {
		return "", fmt.Errorf("sysctl %s: %w", name, os.ErrNotExist)
	}
	return v, nil
}

func (f *Fake) Set(name, value string) error {
	if _, ok := f.Values[name]; !ok {
		return fmt.Errorf("sysctl %s: %w", name, os.ErrNotExist)
	}
	if f.ReadOnly[name] {
		return fmt.Errorf("sysctl %s=%s: %w", name, value, os.ErrPermission)
	}
	f.Values[name] = value
	return nil
}
