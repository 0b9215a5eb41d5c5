package ipvs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	mobyipvs "github.com/moby/ipvs"
	"github.com/vishvananda/netlink"
)

// IPVS is the part of *ipvs.Handle (github.com/moby/ipvs) the backend uses. Every method is one
// netlink round trip.
type IPVS interface {
	GetServices() ([]*mobyipvs.Service, error)
	GetDestinations(s *mobyipvs.Service) ([]*mobyipvs.Destination, error)
	NewService(s *mobyipvs.Service) error
	UpdateService(s *mobyipvs.Service) error
	DelService(s *mobyipvs.Service) error
	NewDestination(s *mobyipvs.Service, d *mobyipvs.Destination) error
	UpdateDestination(s *mobyipvs.Service, d *mobyipvs.Destination) error
	DelDestination(s *mobyipvs.Service, d *mobyipvs.Destination) error
	// SetConfig sets the IPVS connection timeouts; a zero field leaves that timeout unchanged.
	SetConfig(c *mobyipvs.Config) error
}

var _ IPVS = (*mobyipvs.Handle)(nil)

// Links is the part of *netlink.Handle used for kube-ipvs0 and for reading the node's addresses.
type Links interface {
	LinkByName(name string) (netlink.Link, error)
	LinkAdd(link netlink.Link) error
	LinkSetUp(link netlink.Link) error
	AddrList(link netlink.Link, family int) ([]netlink.Addr, error)
	AddrAdd(link netlink.Link, addr *netlink.Addr) error
	AddrDel(link netlink.Link, addr *netlink.Addr) error
}

var _ Links = (*netlink.Handle)(nil)

// ErrNoIPVS is wrapped by the start-up check's error on a kernel without IPVS.
var ErrNoIPVS = errors.New("kernel has no IPVS support")

// GenlFamilyGetter looks up a generic-netlink family; netlink.GenlFamilyGet and *netlink.Handle fit.
type GenlFamilyGetter func(name string) (*netlink.GenlFamily, error)

// CheckKernel verifies that the kernel offers IPVS before the backend is built. IPVS registers the
// generic-netlink family "IPVS" when the ip_vs module is loaded, so its absence after a best-effort
// modprobe means the kernel lacks CONFIG_IP_VS or the module. There is no fallback: the caller exits.
func CheckKernel(lookup GenlFamilyGetter, modprobe func(module string) error) error {
	if _, err := lookup("IPVS"); err == nil {
		return nil
	}
	var loadErr error
	if modprobe != nil {
		loadErr = modprobe("ip_vs")
	}
	if _, err := lookup("IPVS"); err == nil {
		return nil
	} else if loadErr == nil {
		loadErr = err
	}
	return fmt.Errorf("--proxy-mode=ipvs: %w: the generic-netlink family \"IPVS\" is missing, so the kernel was built without CONFIG_IP_VS or the ip_vs module cannot be loaded (%v); load ip_vs (and the ip_vs_<scheduler> module) or run with --proxy-mode=iptables", ErrNoIPVS, loadErr)
}

// CheckScheduler verifies that the kernel has the IPVS scheduler s (module ip_vs_<s>, or built in),
// loading it when possible, so that a scheduler this kernel lacks (ip_vs_twos arrived in 6.7) is a
// start-up error rather than a failure on every virtual server.
func CheckScheduler(s string, modprobe func(module string) error) error {
	mod := "ip_vs_" + s
	if _, err := os.Stat(filepath.Join("/sys/module", mod)); err == nil {
		return nil
	}
	var loadErr error
	if modprobe != nil {
		loadErr = modprobe(mod)
	}
	if _, err := os.Stat(filepath.Join("/sys/module", mod)); err == nil {
		return nil
	}
	return fmt.Errorf("--ipvs-scheduler=%s: this kernel has no %s module (%v); choose another scheduler", s, mod, loadErr)
}

// Modprobe loads a kernel module with modprobe(8).
func Modprobe(module string) error {
	out, err := exec.Command("modprobe", module).CombinedOutput()
	if err != nil {
		return fmt.Errorf("modprobe %s: %w: %s", module, err, bytes.TrimSpace(out))
	}
	return nil
}
