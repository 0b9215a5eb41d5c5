package netnstest

import (
	"io"
	"net"
	"testing"
	"time"
)

// ServeTCP listens on addr inside the namespace (network is "tcp", "tcp4" or "tcp6") and runs
// handle on every accepted connection, each on its own goroutine, closing the connection when
// handle returns. The listener closes at t.Cleanup.
func (ns *NS) ServeTCP(t testing.TB, network, addr string, handle func(net.Conn)) {
	t.Helper()
	ln := openIn(t, ns, network+" "+addr, func() (net.Listener, error) { return net.Listen(network, addr) })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
}

// ServeUDP listens on addr inside the namespace (network is "udp", "udp4" or "udp6") and answers
// every datagram with reply(sender). The socket closes at t.Cleanup.
func (ns *NS) ServeUDP(t testing.TB, network, addr string, reply func(from net.Addr) []byte) {
	t.Helper()
	pc := openIn(t, ns, network+" "+addr, func() (net.PacketConn, error) { return net.ListenPacket(network, addr) })
	go func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(reply(from), from)
		}
	}()
}

// openIn opens a socket inside ns, failing the test if it cannot, and closes it at t.Cleanup
// (which runs before the cleanup, registered earlier, that deletes the namespace).
func openIn[S io.Closer](t testing.TB, ns *NS, addr string, open func() (S, error)) S {
	t.Helper()
	var s S
	if err := ns.Do(func() (err error) { s, err = open(); return err }); err != nil {
		t.Fatalf("listen on %s in %s: %v", addr, ns.Name, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Dial connects from inside the namespace to addr. The socket keeps the namespace it was made in,
// so the connection is used like any other once Dial returns.
func (ns *NS) Dial(network, addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := ns.Do(func() (err error) { c, err = net.DialTimeout(network, addr, timeout); return err })
	return c, err
}
