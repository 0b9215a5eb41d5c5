// Command switchyard-cni is the CNI plugin of Switchyard's built-in pod network. The container runtime
// executes it with CNI_* environment variables; see podnet/cni for what it does.
package main

import (
	"github.com/containernetworking/cni/pkg/skel"

	"github.com/switchyard/switchyard/podnet/cni"
)

func main() {
	skel.PluginMainFuncs(skel.CNIFuncs{Add: cni.Add, Del: cni.Del, Check: cni.Check}, cni.SupportedVersions,
		"switchyard-cni: connects pods to the node bridge of the Switchyard pod network")
}
