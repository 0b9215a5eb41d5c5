package main

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/api/resource"
)

// The flag types below are the ones kube-proxy's flags have (its --help shows their names), so a
// value kube-proxy takes parses here too and a value it refuses is refused here.

// ipValue is an IP address flag (kube-proxy's type "ip").
type ipValue struct{ p *string }

func (v ipValue) String() string { return *v.p }
func (v ipValue) Type() string   { return "ip" }
func (v ipValue) Set(s string) error {
	if net.ParseIP(strings.TrimSpace(s)) == nil {
		return fmt.Errorf("%q is not an IP address", s)
	}
	*v.p = strings.TrimSpace(s)
	return nil
}

// mapStringBool is a "key=bool,key=bool" flag (kube-proxy's type "mapStringBool", --feature-gates).
// Like kube-proxy's, the first Set replaces the default map and later ones add to it.
type mapStringBool struct {
	p   *map[string]bool
	set bool
}

func (v *mapStringBool) Type() string { return "mapStringBool" }

func (v *mapStringBool) String() string {
	var pairs []string
	for k, b := range *v.p {
		pairs = append(pairs, fmt.Sprintf("%s=%t", k, b))
	}
	sort.Strings(pairs)
	return strings.Join(pairs, ",")
}

func (v *mapStringBool) Set(s string) error {
	if !v.set {
		*v.p = map[string]bool{}
		v.set = true
	}
	for _, pair := range strings.Split(s, ",") {
		if strings.TrimSpace(pair) == "" {
			continue
		}
		k, b, ok := strings.Cut(pair, "=")
		if !ok {
			return fmt.Errorf("%q: want key=true or key=false", pair)
		}
		on, err := strconv.ParseBool(strings.TrimSpace(b))
		if err != nil {
			return fmt.Errorf("%q: %v", pair, err)
		}
		(*v.p)[strings.TrimSpace(k)] = on
	}
	return nil
}

// versionValue is --version as kube-proxy has it: bare or "true" prints the version and exits,
// "raw" prints it in detail, "false" does nothing, and "vX.Y.Z" sets the version to report.
type versionValue struct{ p *string }

func (v versionValue) String() string   { return *v.p }
func (v versionValue) Type() string     { return "version" }
func (v versionValue) IsBoolFlag() bool { return true }
func (v versionValue) Set(s string) error {
	if s == "raw" || strings.HasPrefix(s, "v") {
		*v.p = s
		return nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return fmt.Errorf("%q: want true, false, raw or vX.Y.Z", s)
	}
	*v.p = strconv.FormatBool(b)
	return nil
}

// addVersionFlag registers --version so that a bare --version means --version=true.
func addVersionFlag(fs *pflag.FlagSet, p *string) {
	fs.Var(versionValue{p}, "version", "--version, --version=raw prints version information and quits; --version=vX.Y.Z... sets the reported version")
	fs.Lookup("version").NoOptDefVal = "true"
}

// wordSepNormalize lets "--kube_api_qps" mean "--kube-api-qps", as kube-proxy's command line does.
func wordSepNormalize(_ *pflag.FlagSet, name string) pflag.NormalizedName {
	return pflag.NormalizedName(strings.ReplaceAll(name, "_", "-"))
}

// quantityValue is a resource quantity flag such as "512", "1K" or "2Ki" (kube-proxy's "quantity").
// Options keep it as the string given; "" is kube-proxy's default, zero.
type quantityValue struct{ p *string }

func (v quantityValue) String() string { return *v.p }
func (v quantityValue) Type() string   { return "quantity" }
func (v quantityValue) Set(s string) error {
	if _, err := resource.ParseQuantity(s); err != nil {
		return fmt.Errorf("%q is not a quantity: %v", s, err)
	}
	*v.p = s
	return nil
}

func nonZeroQuantity(s string) bool {
	q, err := resource.ParseQuantity(s)
	return err == nil && !q.IsZero()
}
