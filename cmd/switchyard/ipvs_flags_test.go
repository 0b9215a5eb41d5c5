package main

import (
	"testing"
	"time"
)

// TestIPVSFlags: the --ipvs-* flags reach the IPVS backend's options (the sync periods stay with the
// daemon's sync loop), and bad values are refused.
func TestIPVSFlags(t *testing.T) {
	opts, _, err := parseFlags([]string{"--proxy-mode=ipvs", "--ipvs-scheduler=sh", "--ipvs-sync-period=1m", "--ipvs-min-sync-period=2s", "--ipvs-strict-arp",
		"--ipvs-tcp-timeout=900s", "--ipvs-tcpfin-timeout=30s", "--ipvs-udp-timeout=10s", "--ipvs-exclude-cidrs=10.1.0.0/16, 10.2.3.4/32"})
	if err != nil {
		t.Fatal(err)
	}
	o := ipvsOptions(opts)
	if o.Scheduler != "sh" || opts.IPVS.SyncPeriod != time.Minute || opts.IPVS.MinSyncPeriod != 2*time.Second || !o.StrictARP ||
		o.TCPTimeout != 900*time.Second || o.TCPFinTimeout != 30*time.Second || o.UDPTimeout != 10*time.Second ||
		len(o.ExcludeCIDRs) != 2 || o.ExcludeCIDRs[1].String() != "10.2.3.4/32" {
		t.Errorf("parsed options: %+v, backend options: %+v", opts.IPVS, o)
	}
	if err := o.Validate(); err != nil {
		t.Error(err)
	}
	if _, _, err := parseFlags([]string{"--ipvs-exclude-cidrs=10.1.0.0/33"}); err == nil {
		t.Errorf("a bad CIDR was accepted")
	}
	if _, _, err := parseFlags([]string{"--proxy-mode=ipvs", "--ipvs-min-sync-period=1h"}); err == nil {
		t.Errorf("min sync period above sync period accepted")
	}
}
