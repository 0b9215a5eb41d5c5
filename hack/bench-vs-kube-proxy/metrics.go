package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netns"

	"github.com/switchyard/switchyard/internal/nsthread"
)

// The metric names both proxies export (kube-proxy's, under its "kubeproxy" subsystem).
const (
	mFullSync     = "kubeproxy_sync_full_proxy_rules_duration_seconds"
	mPartialSync  = "kubeproxy_sync_partial_proxy_rules_duration_seconds"
	mAnySync      = "kubeproxy_sync_proxy_rules_duration_seconds"
	mLastSync     = "kubeproxy_sync_proxy_rules_last_timestamp_seconds"
	mLastQueued   = "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds"
	mProgramming  = "kubeproxy_network_programming_duration_seconds"
	metricsAddr   = "127.0.0.1:10249"
	metricsPollIv = 100 * time.Millisecond
)

// Metrics is one scrape: samples by name (histogram _sum and _count included) that carry no label
// or only the bench's family, ip_family="IPv4". Since v1.3x kube-proxy labels its sync metrics with
// ip_family and, on a dual-stack node, syncs an (empty) IPv6 side too; the workload is IPv4, so the
// IPv4 samples are the figures. Other labelled samples, such as _bucket, are dropped: the bench
// needs none of them.
type Metrics map[string]float64

// benchFamilyLabel is the only label set a kept sample may carry.
const benchFamilyLabel = `{ip_family="IPv4"}`

// parseMetrics reads the Prometheus text format.
func parseMetrics(r io.Reader) (Metrics, error) {
	m := Metrics{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		if i := strings.IndexByte(line, '{'); i >= 0 {
			if !strings.HasPrefix(line[i:], benchFamilyLabel+" ") {
				continue
			}
			line = line[:i] + line[i+len(benchFamilyLabel):]
		}
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		v, err := strconv.ParseFloat(fields[1], 64)
		if err != nil {
			return nil, fmt.Errorf("metric line %q: %w", line, err)
		}
		m[fields[0]] = v
	}
	return m, sc.Err()
}

// nsScraper fetches /metrics from 127.0.0.1:10249 inside a node namespace. It opens each
// connection from a thread switched into that namespace, which is far cheaper than forking
// `ip netns exec curl` ten times a second.
type nsScraper struct {
	ns     netns.NsHandle
	client *http.Client
}

func newScraper(nsName string) (*nsScraper, error) {
	h, err := netns.GetFromName(nsName)
	if err != nil {
		return nil, fmt.Errorf("open network namespace %s: %w", nsName, err)
	}
	s := &nsScraper{ns: h}
	s.client = &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{DialContext: s.dial, DisableKeepAlives: true},
	}
	return s, nil
}

func (s *nsScraper) Close() { s.ns.Close() }

// dial opens the connection on a thread inside the node namespace (internal/nsthread); the socket
// stays in that namespace afterwards.
func (s *nsScraper) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var conn net.Conn
	err := nsthread.Do(s.ns, func() error {
		var err error
		conn, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		return err
	})
	return conn, err
}

// Scrape fetches and parses the proxy's metrics.
func (s *nsScraper) Scrape(ctx context.Context) (Metrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+metricsAddr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	return parseMetrics(resp.Body)
}
