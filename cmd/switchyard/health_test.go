package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/switchyard/switchyard/internal/polltest"
	"github.com/switchyard/switchyard/proxier/healthcheck"
	"github.com/switchyard/switchyard/watcher"
)

// TestNodeEligibilityFollowsThisNode drives watchNodeEligibility through a fake API server: not
// eligible before the Node exists, eligible once it does, not eligible when the autoscaler taints
// it, and not once it is deleted; other Nodes never count.
func TestNodeEligibilityFollowsThisNode(t *testing.T) {
	client := fake.NewClientset()
	health := healthcheck.NewProxyHealth(clocktesting.NewFakeClock(time.Now()), time.Minute)
	f := watcher.NewNodeInformerFactory(client, 0, "n1", true)
	watchNodeEligibility(f, "n1", health)
	ctx, cancel := context.WithCancel(context.Background())
	f.Start(ctx.Done())
	defer func() { cancel(); f.Shutdown() }() // Shutdown waits for the informers to stop
	f.WaitForCacheSync(ctx.Done())

	eligible := func(want bool, what string) {
		t.Helper()
		polltest.Eventually(t, fmt.Sprintf("node eligible %v: %s", want, what), func() bool { return health.Status().NodeEligible == want })
	}
	nodes := client.CoreV1().Nodes()

	eligible(false, "before the Node is seen")
	if _, err := nodes.Create(ctx, &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n2"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	n1, err := nodes.Create(ctx, &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	eligible(true, "this Node seen")

	n1.Spec.Taints = []v1.Taint{{Key: healthcheck.ToBeDeletedTaint, Effect: v1.TaintEffectNoSchedule}}
	if _, err := nodes.Update(ctx, n1, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eligible(false, "tainted by the autoscaler")

	n1.Spec.Taints = nil
	if _, err := nodes.Update(ctx, n1, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eligible(true, "taint removed")

	if err := nodes.Delete(ctx, "n2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // another Node's deletion must not count
	eligible(true, "another Node deleted")
	if err := nodes.Delete(ctx, "n1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eligible(false, "this Node deleted")
}
