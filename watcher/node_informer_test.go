package watcher

import (
	"context"
	"sort"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"

	"github.com/switchyard/switchyard/internal/polltest"
)

// nodeSelectingClientset is a fake clientset that, like the API server, applies a field selector
// on metadata.name to node lists and watches (client-go's fake applies label selectors only).
func nodeSelectingClientset(objs ...runtime.Object) *fake.Clientset {
	client := fake.NewClientset(objs...)
	tracker := client.Tracker()
	nodes := v1.SchemeGroupVersion.WithResource("nodes")
	matches := func(sel fields.Selector, obj runtime.Object) bool {
		node, ok := obj.(*v1.Node)
		return !ok || sel == nil || sel.Matches(fields.Set{"metadata.name": node.Name})
	}
	client.PrependReactor("list", "nodes", func(action k8stesting.Action) (bool, runtime.Object, error) {
		sel := action.(k8stesting.ListAction).GetListRestrictions().Fields
		obj, err := tracker.List(nodes, v1.SchemeGroupVersion.WithKind("Node"), "")
		if err != nil {
			return true, nil, err
		}
		list := obj.(*v1.NodeList)
		kept := list.Items[:0]
		for i := range list.Items {
			if matches(sel, &list.Items[i]) {
				kept = append(kept, list.Items[i])
			}
		}
		list.Items = kept
		return true, list, nil
	})
	client.PrependWatchReactor("nodes", func(action k8stesting.Action) (bool, watch.Interface, error) {
		sel := action.(k8stesting.WatchAction).GetWatchRestrictions().Fields
		w, err := tracker.Watch(nodes, "")
		if err != nil {
			return true, nil, err
		}
		return true, watch.Filter(w, func(e watch.Event) (watch.Event, bool) { return e, matches(sel, e.Object) }), nil
	})
	return client
}

func node(name string) *v1.Node { return &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}} }

// cachedNodes starts the factory's Node informer, creates a node after the initial list (so the
// watch is exercised too), and returns the names the informer's store ends up holding.
func cachedNodes(t *testing.T, allNodes bool) []string {
	t.Helper()
	client := nodeSelectingClientset(node("n1"), node("n2"))
	f := NewNodeInformerFactory(client, 0, "n1", allNodes)
	inf := f.Core().V1().Nodes().Informer()
	ctx, cancel := context.WithCancel(context.Background())
	f.Start(ctx.Done())
	defer func() { cancel(); f.Shutdown() }() // Shutdown waits for the informers to stop
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		t.Fatal("node informer never synced")
	}
	if _, err := client.CoreV1().Nodes().Create(ctx, node("n3"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	want := 1
	if allNodes {
		want = 3
	}
	polltest.Eventually(t, "the informer holds the nodes it lists", func() bool { return len(inf.GetStore().ListKeys()) >= want })
	if !allNodes {
		// n3's watch event, if it were let through, arrives as fast as it would with allNodes.
		time.Sleep(50 * time.Millisecond)
	}
	keys := inf.GetStore().ListKeys()
	sort.Strings(keys)
	return keys
}

func TestNodeInformerWatchesOnlyThisNode(t *testing.T) {
	if got := cachedNodes(t, false); len(got) != 1 || got[0] != "n1" {
		t.Fatalf("without the pod network the store holds only this node, got %v", got)
	}
}

func TestNodeInformerWatchesEveryNodeForThePodNetwork(t *testing.T) {
	if got := cachedNodes(t, true); len(got) != 3 || got[0] != "n1" || got[1] != "n2" || got[2] != "n3" {
		t.Fatalf("the pod network needs every node (its peers), got %v", got)
	}
}
