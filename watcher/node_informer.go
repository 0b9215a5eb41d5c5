package watcher

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
)

// NewNodeInformerFactory returns the informer factory whose Node informer New and the health
// checks read. Unless allNodes, it lists and watches only the Node named nodeName, with kube-proxy's
// field selector metadata.name=<node>: at 5,000 nodes, every proxy watching every Node is O(N^2)
// API traffic for objects it never reads. The pod network needs allNodes, since its peers are the
// other Nodes.
func NewNodeInformerFactory(client kubernetes.Interface, resync time.Duration, nodeName string, allNodes bool) informers.SharedInformerFactory {
	if allNodes {
		return informers.NewSharedInformerFactoryWithOptions(client, resync)
	}
	return informers.NewSharedInformerFactoryWithOptions(client, resync,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", nodeName).String()
		}))
}
