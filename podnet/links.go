package podnet

import (
	"context"
	"fmt"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"k8s.io/klog/v2"
)

// watchLinks returns a Deps.WatchLinks that subscribes to link events of ns (nil: the current
// namespace) and resubscribes if the kernel drops the subscription.
func watchLinks(ns *netns.NsHandle) func(ctx context.Context, changed func(name string)) error {
	return func(ctx context.Context, changed func(name string)) error {
		for ctx.Err() == nil {
			updates := make(chan netlink.LinkUpdate, 64)
			done := make(chan struct{})
			errc := make(chan error, 1)
			err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{
				Namespace: ns,
				ErrorCallback: func(err error) {
					select {
					case errc <- err:
					default:
					}
				},
			})
			if err != nil {
				return fmt.Errorf("subscribe to link events: %w", err)
			}
			func() {
				defer close(done)
				for {
					select {
					case <-ctx.Done():
						return
					case err := <-errc:
						klog.V(2).InfoS("Link event subscription failed; resubscribing", "err", err)
						return
					case u, ok := <-updates:
						if !ok {
							return
						}
						if u.Link != nil {
							changed(u.Link.Attrs().Name)
						}
					}
				}
			}()
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
		return nil
	}
}
