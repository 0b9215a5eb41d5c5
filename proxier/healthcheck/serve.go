package healthcheck

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
)

// RetryInterval is how long a health server that cannot bind its address waits before trying again.
// During a migration kube-proxy may still hold :10256 or a healthCheckNodePort; kube-proxy itself
// retries its healthz server every 5s, unless --bind-address-hard-fail.
const RetryInterval = 5 * time.Second

// Listener opens a TCP listener; tests substitute one that hands out loopback ports.
type Listener interface {
	Listen(addr string) (net.Listener, error)
}

// NetListener is the real Listener.
type NetListener struct{}

func (NetListener) Listen(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }

// Server serves one handler on one address and keeps trying to bind it until it is closed. The
// metrics server uses it too.
type Server struct {
	addr  string
	srv   *http.Server
	stop  chan struct{}
	done  chan struct{}
	close sync.Once
}

// StartServer serves h on addr. The first bind happens before it returns, and its error is returned;
// the server then goes on trying every RetryInterval (by clk) in the background, logging each
// failure, until Close. logKV are klog key/value pairs naming the server in those logs.
func StartServer(clk clock.Clock, l Listener, addr string, h http.Handler, logKV ...any) (*Server, error) {
	s := &Server{
		addr: addr,
		srv:  &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second},
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	logKV = append([]any{"address", addr}, logKV...)
	ln, err := l.Listen(addr)
	if err != nil {
		err = fmt.Errorf("listen on %s: %w", addr, err)
		klog.ErrorS(err, "Cannot listen; retrying", append(logKV, "retryIn", RetryInterval)...)
	}
	go s.run(clk, l, ln, logKV)
	return s, err
}

// run serves ln, or binds again after RetryInterval when ln is nil or serving fails.
func (s *Server) run(clk clock.Clock, l Listener, ln net.Listener, logKV []any) {
	defer close(s.done)
	for {
		if ln != nil {
			klog.V(2).InfoS("Serving", logKV...)
			err := s.srv.Serve(ln)
			if errors.Is(err, http.ErrServerClosed) {
				return
			}
			klog.ErrorS(err, "Server stopped; retrying", append(logKV, "retryIn", RetryInterval)...)
		}
		select {
		case <-s.stop:
			return
		case <-clk.After(RetryInterval):
		}
		var err error
		if ln, err = l.Listen(s.addr); err != nil {
			klog.ErrorS(err, "Cannot listen; retrying", append(logKV, "retryIn", RetryInterval)...)
		}
	}
}

// Close stops serving and retrying, and returns once the address is released.
func (s *Server) Close() {
	s.close.Do(func() {
		close(s.stop)
		_ = s.srv.Close()
	})
	<-s.done
}
