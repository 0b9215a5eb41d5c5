// Package ipvsvm runs the end-to-end ClusterIP and NodePort scenarios in IPVS mode (issue 5). This
// machine's kernel has no IPVS, so the node is the qemu VM of hack/vm: the control plane runs on
// the host's loopback (hack/local-up.sh with one node and no proxy), and the real switchyard binary
// runs inside the VM with --proxy-mode=ipvs, reaching the API server through qemu's user-mode
// network at 10.0.2.2. Backends and clients are network namespaces inside the VM.
//
// The tests are behind the `ipvsvm` build tag and need root:
//
//	SWITCHYARD_PRIVILEGED=1 go test -tags ipvsvm -count=1 -v ./e2e/ipvsvm/
//
// TestIPVSVM (host side) brings up the control plane, writes the Node, Service and EndpointSlice,
// builds a static copy of this package's tests and runs TestGuest (VM side) under hack/vm/run.sh.
package ipvsvm
