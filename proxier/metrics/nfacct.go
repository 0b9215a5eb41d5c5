package metrics

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/klog/v2"

	"github.com/switchyard/switchyard/internal/nfacct"
)

// The nfacct counters iptables mode's rules count packets into, under kube-proxy's names, so
// that the counters a kube-proxy left behind carry on.
const (
	// NFAcctInvalidDropped counts packets the INVALID-state drop in SY-FORWARD drops.
	NFAcctInvalidDropped = "ct_state_invalid_dropped_pkts"
	// NFAcctLocalhostNodePorts counts packets to 127.0.0.0/8 that a node port accepted.
	NFAcctLocalhostNodePorts = "localhost_nps_accepted_pkts"
)

// NFAcctCounters are every counter iptables mode counts into.
var NFAcctCounters = []string{NFAcctInvalidDropped, NFAcctLocalhostNodePorts}

var (
	iptablesCTStateInvalidDroppedPackets = prometheus.NewDesc(subsystem+"_iptables_ct_state_invalid_dropped_packets_total",
		alpha("packets dropped by iptables to work around conntrack problems"), nil, nil)
	iptablesLocalhostNodePortsAcceptedPackets = prometheus.NewDesc(subsystem+"_iptables_localhost_nodeports_accepted_packets_total",
		alpha("Number of packets accepted on nodeports of loopback interface"), nil, nil)
)

// nfacctCollector exports one nfacct counter's packets as a counter metric, read at scrape time.
// A counter that cannot be read is left out of the scrape, as kube-proxy does.
type nfacctCollector struct {
	reader  nfacct.Interface
	counter string
	desc    *prometheus.Desc
}

func (c *nfacctCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *nfacctCollector) Collect(ch chan<- prometheus.Metric) {
	got, err := c.reader.Get(c.counter)
	if err != nil {
		if errors.Is(err, nfacct.ErrNotFound) {
			// The proxier has not created it (yet), or could not: it says why in its log.
			klog.V(4).InfoS("nfacct counter not there for a metric", "counter", c.counter)
		} else {
			klog.ErrorS(err, "Failed to read an nfacct counter for a metric", "counter", c.counter)
		}
		return
	}
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(got.Packets))
}

// RegisterNFAcct adds iptables mode's two nfacct-backed metrics to reg, read through r.
// kube-proxy registers them in iptables mode only.
func RegisterNFAcct(reg prometheus.Registerer, r nfacct.Interface) {
	reg.MustRegister(
		&nfacctCollector{reader: r, counter: NFAcctInvalidDropped, desc: iptablesCTStateInvalidDroppedPackets},
		&nfacctCollector{reader: r, counter: NFAcctLocalhostNodePorts, desc: iptablesLocalhostNodePortsAcceptedPackets},
	)
}
