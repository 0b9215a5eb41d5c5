// Package echo is the server every pod of the local cluster runs, and the parser for its answers.
// It answers each HTTP request and each UDP datagram with one line naming the pod and the client
// address it saw, so a test or the demo can tell which backend a Service picked and whether the
// client IP survived the proxy (masquerade or not):
//
//	pod=default/echo-1 client=10.244.1.5:40312
package echo

import (
	"fmt"
	"net"
	"net/http"
	"strings"

	"k8s.io/klog/v2"
)

// Server answers with the pod name and the client address.
type Server struct {
	Pod string
}

// Answer is the line sent back for a client at addr.
func (s *Server) Answer(addr string) string {
	return fmt.Sprintf("pod=%s client=%s\n", s.Pod, addr)
}

// ServeHTTP serves every path on l with Answer until l is closed.
func (s *Server) ServeHTTP(l net.Listener) error {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		// Each request is its own answer: keeping the connection would pin a test's later
		// requests to the backend of the first one and hide the proxy's balancing.
		w.Header().Set("Connection", "close")
		fmt.Fprint(w, s.Answer(r.RemoteAddr))
	})
	err := http.Serve(l, h)
	return fmt.Errorf("http on %s: %w", l.Addr(), err)
}

// ServeUDP answers every datagram on pc with Answer until pc is closed.
func (s *Server) ServeUDP(pc net.PacketConn) error {
	buf := make([]byte, 2048)
	for {
		_, from, err := pc.ReadFrom(buf)
		if err != nil {
			return fmt.Errorf("udp on %s: %w", pc.LocalAddr(), err)
		}
		if _, err := pc.WriteTo([]byte(s.Answer(from.String())), from); err != nil {
			klog.ErrorS(err, "Cannot answer", "client", from.String())
		}
	}
}

// ParseAnswer splits an answer line into the pod name and the client address it reports.
func ParseAnswer(line string) (pod, client string, err error) {
	fields := strings.Fields(line)
	if len(fields) != 2 || !strings.HasPrefix(fields[0], "pod=") || !strings.HasPrefix(fields[1], "client=") {
		return "", "", fmt.Errorf("not an echoserver answer: %q", line)
	}
	return strings.TrimPrefix(fields[0], "pod="), strings.TrimPrefix(fields[1], "client="), nil
}

// SplitList splits a comma-separated flag value, dropping empty items.
func SplitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
