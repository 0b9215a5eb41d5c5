package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/switchyard/switchyard/e2e/framework/echo"
)

// The demo sends every request from inside a network namespace (a pod's, a node's or the
// underlay's). A Go process cannot safely move its threads between namespaces, so it runs itself
// there instead: `ip netns exec NS <this binary> probe KIND TARGET TIMEOUT`. The probe prints the
// echo server's answer (or the HTTP body) on stdout and exits non-zero when no answer came.
const probeCommand = "probe"

// runProbeCommand is the probe side: args are KIND TARGET TIMEOUT.
func runProbeCommand(args []string) int {
	if len(args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: demo probe tcp|udp|get TARGET TIMEOUT")
		return 2
	}
	timeout, err := time.ParseDuration(args[2])
	if err != nil {
		fmt.Fprintf(os.Stderr, "probe timeout %q: %v\n", args[2], err)
		return 2
	}
	out, err := probe(args[0], args[1], timeout)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Print(out)
	return 0
}

// probe sends one request of kind "tcp" (HTTP GET to host:port), "udp" (one datagram to
// host:port) or "get" (HTTP GET of a URL, whatever its status; the status code comes first).
func probe(kind, target string, timeout time.Duration) (string, error) {
	switch kind {
	case "tcp":
		return httpGet("http://"+target+"/", timeout, false)
	case "get":
		return httpGet(target, timeout, true)
	case "udp":
		return udpRequest(target, timeout)
	}
	return "", fmt.Errorf("unknown probe kind %q: want tcp, udp or get", kind)
}

func httpGet(url string, timeout time.Duration, withStatus bool) (string, error) {
	// A fresh connection per request: a kept-alive one would pin every request to one backend.
	client := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get(url)
	if err != nil {
		return "", fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("GET %s: read body: %w", url, err)
	}
	if withStatus {
		return fmt.Sprintf("%d %s", resp.StatusCode, body), nil
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: status %s", url, resp.Status)
	}
	return string(body), nil
}

func udpRequest(target string, timeout time.Duration) (string, error) {
	conn, err := net.DialTimeout("udp", target, timeout)
	if err != nil {
		return "", fmt.Errorf("udp %s: %w", target, err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return "", fmt.Errorf("udp %s: %w", target, err)
	}
	if _, err := conn.Write([]byte("hello from the switchyard demo\n")); err != nil {
		return "", fmt.Errorf("udp %s: send: %w", target, err)
	}
	buf := make([]byte, 2048)
	n, err := conn.Read(buf)
	if err != nil {
		return "", fmt.Errorf("udp %s: no answer: %w", target, err)
	}
	return string(buf[:n]), nil
}

// answer is what one request got back.
type answer struct {
	Pod    string // namespace/name of the pod that answered
	Client string // the client address (ip:port) the pod saw
}

// ClientIP is the address part of Client.
func (a answer) ClientIP() string {
	host, _, err := net.SplitHostPort(a.Client)
	if err != nil {
		return a.Client
	}
	return host
}

// prober runs probes inside namespaces by re-executing this binary there.
type prober struct {
	self string // this binary
}

func newProber() (*prober, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the demo binary to run probes: %w", err)
	}
	return &prober{self: self}, nil
}

// raw runs one probe in netns and returns what it printed.
func (p *prober) raw(ctx context.Context, netns, kind, target string, timeout time.Duration) (string, error) {
	// The outer deadline leaves room for ip netns exec and the process start.
	ctx, cancel := context.WithTimeout(ctx, timeout+10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", netns, p.self, probeCommand, kind, target, timeout.String())
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return "", errors.New(msg)
	}
	return stdout.String(), nil
}

// echo sends one request to an echo server (kind tcp or udp) and parses its answer.
func (p *prober) echo(ctx context.Context, netns, kind, target string, timeout time.Duration) (answer, error) {
	out, err := p.raw(ctx, netns, kind, target, timeout)
	if err != nil {
		return answer{}, err
	}
	pod, client, err := echo.ParseAnswer(strings.TrimSpace(out))
	if err != nil {
		return answer{}, err
	}
	return answer{Pod: pod, Client: client}, nil
}
