package bench

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	utiliptables "github.com/switchyard/switchyard/internal/iptables"
)

// Config is one `switchyard bench` run.
type Config struct {
	// Sizes are the service counts, measured in the order given.
	Sizes []int
	// Workload gives everything but the service count.
	Workload Workload
	// Backends to measure: BackendIptables, BackendIPVS or both.
	Backends []string
	// Apply applies each ruleset to a real kernel in a throwaway namespace (root only).
	Apply bool
	// Variants are the iptables variants to apply with; the iptables backend is applied once per
	// variant, the IPVS backend (whose few rules need one) with the first.
	Variants []utiliptables.Variant
	// Connects is how many connects to the first and to the last service are timed per apply.
	Connects int
	// Progress, when set, is told what is about to run.
	Progress func(step string)
}

// Run measures every backend at every size and returns the report. A backend that cannot be applied
// here gets its reason in ApplyUnavailable; any other failure stops the run.
func Run(cfg Config) (*Report, error) {
	if len(cfg.Sizes) == 0 || len(cfg.Backends) == 0 {
		return nil, fmt.Errorf("nothing to measure: need at least one size and one backend")
	}
	for _, b := range cfg.Backends {
		if b != BackendIptables && b != BackendIPVS {
			return nil, fmt.Errorf("unknown backend %q (want %s or %s)", b, BackendIptables, BackendIPVS)
		}
	}
	if cfg.Apply && len(cfg.Variants) == 0 {
		return nil, fmt.Errorf("--apply needs an iptables variant")
	}
	for _, n := range cfg.Sizes {
		w := cfg.Workload
		w.Services = n
		if err := w.Validate(); err != nil {
			return nil, err
		}
	}
	progress := cfg.Progress
	if progress == nil {
		progress = func(string) {}
	}
	rep := &Report{Workload: cfg.Workload, Started: time.Now().UTC(), Host: hostFacts()}
	rep.Workload.Services = 0 // per result
	for _, n := range cfg.Sizes {
		w := cfg.Workload
		w.Services = n
		progress(fmt.Sprintf("%d services: synthesising the workload", n))
		snap, err := Synthesize(w)
		if err != nil {
			return nil, err
		}
		for _, backend := range cfg.Backends {
			progress(fmt.Sprintf("%d services: rendering with the %s backend", n, backend))
			render := RenderIptables
			if backend == BackendIPVS {
				render = RenderIPVS
			}
			res, err := render(snap, w)
			if err != nil {
				return nil, fmt.Errorf("%s render of %d services: %w", backend, n, err)
			}
			if !cfg.Apply {
				rep.Results = append(rep.Results, res)
				continue
			}
			variants := cfg.Variants
			if backend == BackendIPVS {
				variants = variants[:1]
			}
			for _, v := range variants {
				r := res
				progress(fmt.Sprintf("%d services: applying the %s backend (%s) in a throwaway namespace", n, backend, v))
				apply := ApplyIptables
				if backend == BackendIPVS {
					apply = ApplyIPVS
				}
				a, err := apply(snap, v, cfg.Connects)
				if reason, ok := IsUnavailable(err); ok {
					r.ApplyUnavailable = reason
				} else if err != nil {
					return nil, fmt.Errorf("%s apply (%s) of %d services: %w", backend, v, n, err)
				}
				r.Apply = a
				rep.Results = append(rep.Results, r)
			}
		}
	}
	return rep, nil
}

// hostFacts records the machine, best effort: a missing /proc file leaves its field empty.
func hostFacts() Host {
	h := Host{CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			h.LoadAverage = f[0]
		}
	}
	return h
}
