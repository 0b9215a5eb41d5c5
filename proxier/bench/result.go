package bench

import "time"

// Backend names as --proxy-mode spells them.
const (
	BackendIptables = "iptables"
	BackendIPVS     = "ipvs"
)

// Result is what one backend did with one workload size.
type Result struct {
	Backend             string `json:"backend"`
	Services            int    `json:"services"`
	EndpointsPerService int    `json:"endpointsPerService"`

	// Render: one full render of the workload from scratch, measured in this process.
	RenderSeconds    float64 `json:"renderSeconds"`
	RenderAllocBytes uint64  `json:"renderAllocBytes"`
	RenderAllocs     uint64  `json:"renderAllocs"`

	// Rules and Chains count, by table, the iptables rules and chains the backend keeps (for IPVS
	// mode, the few it needs besides its IPVS tables), jumps from built-in chains included.
	Rules  map[string]int `json:"rules"`
	Chains map[string]int `json:"chains"`
	// IPVS mode only: its virtual servers, real servers and ipset members.
	VirtualServers int `json:"virtualServers,omitempty"`
	RealServers    int `json:"realServers,omitempty"`
	IpsetEntries   int `json:"ipsetEntries,omitempty"`

	// Apply holds the kernel figures, when --apply ran for this backend; otherwise
	// ApplyUnavailable says why there are none (empty when --apply was not asked for).
	Apply            *Applied `json:"apply,omitempty"`
	ApplyUnavailable string   `json:"applyUnavailable,omitempty"`
}

// RulesTotal is the sum of Rules over the tables.
func (r *Result) RulesTotal() int { return sum(r.Rules) }

// ChainsTotal is the sum of Chains over the tables.
func (r *Result) ChainsTotal() int { return sum(r.Chains) }

// KernelObjects is every table entry the backend programs: iptables rules plus, in IPVS mode,
// virtual servers, real servers and ipset members. It is the size the kernel holds for the backend.
func (r *Result) KernelObjects() int {
	return r.RulesTotal() + r.VirtualServers + r.RealServers + r.IpsetEntries
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// Applied is what applying a backend's rules to a real kernel, in a throwaway namespace, measured.
type Applied struct {
	// Variant is the iptables variant (nft or legacy) that held the rules.
	Variant string `json:"variant"`
	// FullSyncSeconds is the first sync into empty tables, wall time.
	FullSyncSeconds float64 `json:"fullSyncSeconds"`
	// IncrementalSyncSeconds is the sync after one endpoint of one service changed, wall time.
	IncrementalSyncSeconds float64 `json:"incrementalSyncSeconds"`
	// FirstService and LastService are TCP connect times (SYN to SYN-ACK, so the first packet's
	// walk through the rules is in it) to the ClusterIP of the first and of the last service in the
	// tables.
	FirstService Latency `json:"firstServiceConnect"`
	LastService  Latency `json:"lastServiceConnect"`
}

// Latency summarises repeated connects.
type Latency struct {
	Samples       int     `json:"samples"`
	MedianSeconds float64 `json:"medianSeconds"`
	P90Seconds    float64 `json:"p90Seconds"`
}

// Report is a whole run: the machine it ran on and every result, in the order they were measured.
type Report struct {
	Workload Workload  `json:"workload"`
	Started  time.Time `json:"started"`
	Host     Host      `json:"host"`
	Results  []Result  `json:"results"`
}

// Host describes where the figures were taken: wall times depend on it.
type Host struct {
	Kernel    string `json:"kernel"`
	CPUs      int    `json:"cpus"`
	GoVersion string `json:"goVersion"`
	// LoadAverage is /proc/loadavg's 1-minute figure at the start: a busy machine inflates wall
	// times.
	LoadAverage string `json:"loadAverage"`
}
