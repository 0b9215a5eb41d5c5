package echo

import (
	"io"
	"net"
	"net/http"
	"testing"
)

func TestHTTPAnswerNamesPodAndClient(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{Pod: "default/echo-1"}
	go srv.ServeHTTP(l)
	t.Cleanup(func() { l.Close() })

	// Dial from a known local address so the reported client can be checked exactly.
	local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}
	client := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{LocalAddr: local}).DialContext}}
	resp, err := client.Get("http://" + l.Addr().String() + "/any/path")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	pod, addr, err := ParseAnswer(string(body))
	if err != nil {
		t.Fatal(err)
	}
	if pod != "default/echo-1" {
		t.Errorf("pod = %q, want default/echo-1", pod)
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host != "127.0.0.1" {
		t.Errorf("client = %q, want 127.0.0.1:<port>", addr)
	}
}

func TestUDPAnswerNamesPodAndClient(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{Pod: "ns/udp-pod"}
	go srv.ServeUDP(pc)
	t.Cleanup(func() { pc.Close() })

	conn, err := net.Dial("udp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 512)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	pod, addr, err := ParseAnswer(string(buf[:n]))
	if err != nil {
		t.Fatal(err)
	}
	if pod != "ns/udp-pod" || addr != conn.LocalAddr().String() {
		t.Errorf("answer = pod %q client %q, want ns/udp-pod %s", pod, addr, conn.LocalAddr())
	}
}

func TestParseAnswerRejectsOtherText(t *testing.T) {
	for _, line := range []string{"", "hello world", "pod=a", "client=b pod=a", "pod=a client=b extra"} {
		if _, _, err := ParseAnswer(line); err == nil {
			t.Errorf("ParseAnswer(%q) accepted it", line)
		}
	}
	if pod, c, err := ParseAnswer("pod=a/b client=1.2.3.4:5\n"); err != nil || pod != "a/b" || c != "1.2.3.4:5" {
		t.Errorf("ParseAnswer of a real line = %q %q %v", pod, c, err)
	}
}
