package nsthread_test

import (
	"errors"
	"testing"

	"github.com/vishvananda/netns"

	"github.com/switchyard/switchyard/internal/netnstest"
	"github.com/switchyard/switchyard/internal/nsthread"
)

func TestDoEntersAndLeaves(t *testing.T) {
	netnstest.Require(t)
	var created netns.NsHandle = -1
	if err := nsthread.Do(-1, func() error {
		var err error
		created, err = netns.New()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer created.Close()
	self, err := netns.GetFromPath("/proc/self/ns/net") // the main thread's
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	if self.Equal(created) {
		t.Fatal("netns.New inside Do moved the process's main thread, not just the locked one")
	}
	inside := errors.New("unset")
	if err := nsthread.Do(created, func() error {
		cur, err := netns.Get()
		if err != nil {
			return err
		}
		defer cur.Close()
		if cur.Equal(created) {
			inside = nil
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if inside != nil {
		t.Error("fn did not run inside the namespace it was given")
	}
	want := errors.New("from fn")
	if err := nsthread.Do(created, func() error { return want }); !errors.Is(err, want) {
		t.Errorf("Do returned %v, want fn's error", err)
	}
}
