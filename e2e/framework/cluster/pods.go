package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
)

// No kubelet runs in the local cluster: a Pod object is only what the API server stores, and its
// status is what these helpers write, the way a kubelet would. The EndpointSlice controller reads
// exactly that (spec.nodeName, status.podIP, the Ready condition), so it publishes real slices.

// EnsureNamespace creates namespace name if it does not exist.
func (c *Cluster) EnsureNamespace(ctx context.Context, name string) error {
	_, err := c.Client.CoreV1().Namespaces().Create(ctx,
		&v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", name, err)
	}
	return nil
}

// CreatePodObject creates a Pod bound to node i with the echo server's ports and marks it
// running at ip, Ready as given. It wires no network: use AddEchoPod for a pod that answers.
func (c *Cluster) CreatePodObject(ctx context.Context, namespace, name string, node int, ip string,
	labels map[string]string, ready bool) (*v1.Pod, error) {
	if err := c.EnsureNamespace(ctx, namespace); err != nil {
		return nil, err
	}
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: labels},
		Spec: v1.PodSpec{
			NodeName:                      c.Node(node).Name,
			TerminationGracePeriodSeconds: ptr.To[int64](0),
			Containers: []v1.Container{{
				Name:  "echo",
				Image: "switchyard.local/echoserver",
				Ports: []v1.ContainerPort{
					{Name: "http", ContainerPort: 8080, Protocol: v1.ProtocolTCP},
					{Name: "udp", ContainerPort: 8080, Protocol: v1.ProtocolUDP},
				},
			}},
		},
	}
	if _, err := c.Client.CoreV1().Pods(namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("create pod %s/%s: %w", namespace, name, err)
	}
	return c.SetPodStatus(ctx, namespace, name, ip, ready)
}

// SetPodStatus writes the status a kubelet would: Running at ip on its node, Ready as given.
func (c *Cluster) SetPodStatus(ctx context.Context, namespace, name, ip string, ready bool) (*v1.Pod, error) {
	pods := c.Client.CoreV1().Pods(namespace)
	pod, err := pods.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("get pod %s/%s: %w", namespace, name, err)
	}
	hostIP := ""
	for _, n := range c.Nodes {
		if n.Name == pod.Spec.NodeName {
			hostIP = n.IP
		}
	}
	now := metav1.NewTime(time.Now())
	status := v1.ConditionFalse
	if ready {
		status = v1.ConditionTrue
	}
	pod.Status = v1.PodStatus{
		Phase:     v1.PodRunning,
		PodIP:     ip,
		PodIPs:    []v1.PodIP{{IP: ip}},
		HostIP:    hostIP,
		HostIPs:   []v1.HostIP{{IP: hostIP}},
		StartTime: &now,
		Conditions: []v1.PodCondition{
			{Type: v1.PodScheduled, Status: v1.ConditionTrue, LastTransitionTime: now},
			{Type: v1.PodInitialized, Status: v1.ConditionTrue, LastTransitionTime: now},
			{Type: v1.ContainersReady, Status: status, LastTransitionTime: now},
			{Type: v1.PodReady, Status: status, LastTransitionTime: now},
		},
	}
	out, err := pods.UpdateStatus(ctx, pod, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("update status of pod %s/%s: %w", namespace, name, err)
	}
	return out, nil
}

// SetPodReady flips only the Ready condition (and ContainersReady), keeping the pod's IP.
func (c *Cluster) SetPodReady(ctx context.Context, namespace, name string, ready bool) error {
	pod, err := c.Client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("get pod %s/%s: %w", namespace, name, err)
	}
	_, err = c.SetPodStatus(ctx, namespace, name, pod.Status.PodIP, ready)
	return err
}

// DeletePodObject deletes a Pod at once (grace period 0): with no kubelet to confirm, a graceful
// deletion would leave it terminating for good. Tests of terminating endpoints want exactly that;
// they delete with their own options instead.
func (c *Cluster) DeletePodObject(ctx context.Context, namespace, name string) error {
	err := c.Client.CoreV1().Pods(namespace).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete pod %s/%s: %w", namespace, name, err)
	}
	return nil
}

// NodePodCIDR is the pod CIDR the nodeipam controller gave node i.
func (c *Cluster) NodePodCIDR(ctx context.Context, i int) (netip.Prefix, error) {
	n, err := c.Client.CoreV1().Nodes().Get(ctx, c.Node(i).Name, metav1.GetOptions{})
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("get node %s: %w", c.Node(i).Name, err)
	}
	if n.Spec.PodCIDR == "" {
		return netip.Prefix{}, fmt.Errorf("node %s has no pod CIDR yet", n.Name)
	}
	p, err := netip.ParsePrefix(n.Spec.PodCIDR)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("node %s pod CIDR %q: %w", n.Name, n.Spec.PodCIDR, err)
	}
	return p, nil
}

// PodIPOnNode returns host address number host inside node i's pod CIDR (e.g. 200 gives
// 10.244.1.200 for 10.244.1.0/24), for pod objects that need an address but no network.
func (c *Cluster) PodIPOnNode(ctx context.Context, i int, host int) (string, error) {
	p, err := c.NodePodCIDR(ctx, i)
	if err != nil {
		return "", err
	}
	a := p.Masked().Addr().As4()
	if host <= 0 || host >= 1<<(32-p.Bits())-1 {
		return "", fmt.Errorf("host %d does not fit in %s", host, p)
	}
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v += uint32(host)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}).String(), nil
}

// AddEchoPod starts a real pod on node i with hack/local-pod.sh: a namespace wired by
// switchyard-cni running the echo server, and its Ready Pod object. It returns the pod IP, or
// ErrNoCNI while the plugin is not in the tree.
func (c *Cluster) AddEchoPod(ctx context.Context, node int, namespace, name string, labels map[string]string) (string, error) {
	if labels == nil {
		labels = map[string]string{}
	}
	labelJSON, err := json.Marshal(labels)
	if err != nil {
		return "", fmt.Errorf("labels of pod %s/%s: %w", namespace, name, err)
	}
	out, err := c.script(ctx, "local-pod.sh", "add", strconv.Itoa(node), namespace, name, string(labelJSON))
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 3 {
		return "", ErrNoCNI
	}
	if err != nil {
		return "", fmt.Errorf("hack/local-pod.sh add %d %s %s: %w", node, namespace, name, err)
	}
	return strings.TrimSpace(out), nil
}

// RemoveEchoPod undoes AddEchoPod.
func (c *Cluster) RemoveEchoPod(ctx context.Context, node int, namespace, name string) error {
	if _, err := c.script(ctx, "local-pod.sh", "del", strconv.Itoa(node), namespace, name); err != nil {
		return fmt.Errorf("hack/local-pod.sh del %d %s %s: %w", node, namespace, name, err)
	}
	return nil
}

// WaitFor polls cond every 100 ms until it is true, it fails, or timeout passes. End-to-end
// checks wait on the system (controllers, proxies) converging; timeouts here are generous
// ceilings, never the thing under test.
func WaitFor(ctx context.Context, timeout time.Duration, desc string, cond func(context.Context) (bool, error)) error {
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, cond)
	if err != nil {
		return fmt.Errorf("waiting %s for %s: %w", timeout, desc, err)
	}
	return nil
}

// LogPath is the log file of a process local-up.sh started (e.g. "kube-apiserver",
// "switchyard-sy-node-1").
func (c *Cluster) LogPath(name string) string {
	return filepath.Join(c.State, "logs", name+".log")
}
