// Command echoserver is the program every pod of the local cluster runs: see package echo for what
// it answers.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/switchyard/switchyard/e2e/framework/echo"

	"k8s.io/klog/v2"
)

func main() {
	klog.InitFlags(nil)
	name := flag.String("pod", "", "the pod's namespace/name, put in every answer (required)")
	tcp := flag.String("tcp", ":8080", "comma-separated addresses to serve HTTP on; empty for none")
	udp := flag.String("udp", ":8080", "comma-separated addresses to answer UDP on; empty for none")
	flag.Parse()
	if *name == "" {
		fmt.Fprintln(os.Stderr, "echoserver: --pod is required")
		os.Exit(2)
	}
	srv := &echo.Server{Pod: *name}
	errs := make(chan error, 1)
	for _, addr := range echo.SplitList(*tcp) {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			klog.ErrorS(err, "Cannot listen", "protocol", "tcp", "address", addr)
			os.Exit(1)
		}
		klog.InfoS("Serving HTTP", "pod", *name, "address", l.Addr().String())
		go func() { errs <- srv.ServeHTTP(l) }()
	}
	for _, addr := range echo.SplitList(*udp) {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			klog.ErrorS(err, "Cannot listen", "protocol", "udp", "address", addr)
			os.Exit(1)
		}
		klog.InfoS("Answering UDP", "pod", *name, "address", pc.LocalAddr().String())
		go func() { errs <- srv.ServeUDP(pc) }()
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case s := <-sig:
		klog.InfoS("Exiting", "signal", s.String())
	case err := <-errs:
		klog.ErrorS(err, "Server stopped")
		os.Exit(1)
	}
}
