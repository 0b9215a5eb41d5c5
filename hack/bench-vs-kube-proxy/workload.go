package main

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/switchyard/switchyard/e2e/framework/cluster"
)

const (
	// managedBy is deliberately not the EndpointSlice controller's value, so the controller (and
	// the mirroring controller) leave the bench's slices alone.
	managedBy = "bench-vs-kube-proxy.switchyard.io"
	// triggerTimeAnnotation is what kube-proxy reads to compute network_programming_duration_seconds.
	triggerTimeAnnotation = "endpoints.kubernetes.io/last-change-trigger-time"
	benchLabel            = "switchyard.io/bench"
)

// Workload is N selector-less ClusterIP services in one namespace, each with one EndpointSlice
// of E ready endpoints. Endpoint k (counting over all services) gets 10.244.0.0 + k + 1, so the
// initial addresses are distinct pod-CIDR-like IPs; replacement addresses come from 10.245.0.0/16
// so they never collide with an initial one.
type Workload struct {
	Client    kubernetes.Interface
	Namespace string
	Endpoints int
	Workers   int

	size     int // services created so far
	replaced int // replacement addresses handed out so far
}

func serviceName(i int) string { return fmt.Sprintf("bench-%05d", i) }

func initialIP(k int) string {
	base := netip.MustParseAddr("10.244.0.0").As4()
	n := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(k+1)
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}).String()
}

// Grow creates services size..n-1 (and their slices) in parallel. Objects that already exist
// are kept, so a rerun against a half-built workload completes it.
func (w *Workload) Grow(ctx context.Context, n int) error {
	if n*w.Endpoints >= 1<<16-1 {
		return fmt.Errorf("%d services x %d endpoints do not fit the 10.244.0.0/16 address plan", n, w.Endpoints)
	}
	if w.size == 0 {
		ns := &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: w.Namespace}}
		if _, err := w.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create namespace %s: %w", w.Namespace, err)
		}
	}
	jobs := make(chan int)
	errs := make(chan error, w.Workers)
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range w.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				if err := w.create(ctx, i); err != nil {
					errs <- err
					cancel()
					return
				}
			}
		}()
	}
feed:
	for i := w.size; i < n; i++ {
		select {
		case jobs <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	w.size = n
	return nil
}

func (w *Workload) create(ctx context.Context, i int) error {
	name := serviceName(i)
	svc := cluster.EchoService(w.Namespace, name, v1.ServiceTypeClusterIP, nil)
	svc.Labels = map[string]string{benchLabel: "vs-kube-proxy"}
	if _, err := w.Client.CoreV1().Services(w.Namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create service %s: %w", name, err)
	}
	var endpoints []cluster.Endpoint
	for j := range w.Endpoints {
		endpoints = append(endpoints, cluster.Endpoint{IP: initialIP(i*w.Endpoints + j)})
	}
	slice := cluster.EchoEndpointSlice(w.Namespace, name, name, managedBy, endpoints...)
	slice.Labels[benchLabel] = "vs-kube-proxy"
	if _, err := w.Client.DiscoveryV1().EndpointSlices(w.Namespace).Create(ctx, slice, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create endpointslice %s: %w", name, err)
	}
	return nil
}

// ReplaceOne gives the first endpoint of service i's slice a fresh address and stamps the
// trigger-time annotation with the moment just before the write, as the EndpointSlice
// controller would. It returns the new address.
func (w *Workload) ReplaceOne(ctx context.Context, i int) (string, error) {
	name := serviceName(i)
	slices := w.Client.DiscoveryV1().EndpointSlices(w.Namespace)
	slice, err := slices.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("get endpointslice %s: %w", name, err)
	}
	if len(slice.Endpoints) == 0 {
		return "", fmt.Errorf("endpointslice %s has no endpoints", name)
	}
	w.replaced++
	addr := fmt.Sprintf("10.245.%d.%d", w.replaced/250, w.replaced%250+1)
	slice.Endpoints[0].Addresses = []string{addr}
	if slice.Annotations == nil {
		slice.Annotations = map[string]string{}
	}
	slice.Annotations[triggerTimeAnnotation] = time.Now().UTC().Format(time.RFC3339Nano)
	if _, err := slices.Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
		return "", fmt.Errorf("update endpointslice %s: %w", name, err)
	}
	return addr, nil
}
