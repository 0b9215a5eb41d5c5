// Package nfaccttest holds the stateful fake of internal/nfacct's Interface.
package nfaccttest

import (
	"fmt"

	"github.com/switchyard/switchyard/internal/nfacct"
)

// Fake is an in-memory set of nfacct counters. With Unavailable set, every call fails with it,
// as on a kernel without nfacct or without CAP_NET_ADMIN.
type Fake struct {
	Counters    map[string]nfacct.Counter
	Unavailable error
}

var _ nfacct.Interface = (*Fake)(nil)

// New returns a Fake with no counters.
func New() *Fake { return &Fake{Counters: map[string]nfacct.Counter{}} }

func (f *Fake) Ensure(name string) error {
	if f.Unavailable != nil {
		return f.Unavailable
	}
	if name == "" || len(name) > nfacct.MaxNameLen {
		return fmt.Errorf("%w: %q", nfacct.ErrBadName, name)
	}
	if _, ok := f.Counters[name]; !ok {
		f.Counters[name] = nfacct.Counter{Name: name}
	}
	return nil
}

func (f *Fake) Get(name string) (nfacct.Counter, error) {
	if f.Unavailable != nil {
		return nfacct.Counter{}, f.Unavailable
	}
	c, ok := f.Counters[name]
	if !ok {
		return nfacct.Counter{}, fmt.Errorf("%w: %s", nfacct.ErrNotFound, name)
	}
	return c, nil
}

// Count adds a packet of size bytes to name, as a rule matching it would; the counter must exist.
func (f *Fake) Count(name string, bytes uint64) {
	c, ok := f.Counters[name]
	if !ok {
		panic("nfaccttest: counting into missing counter " + name)
	}
	c.Packets++
	c.Bytes += bytes
	f.Counters[name] = c
}
