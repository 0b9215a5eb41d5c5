package ipvs

import (
	"errors"
	"path/filepath"
	"testing"

	mobyipvs "github.com/moby/ipvs"
	"golang.org/x/sys/unix"

	"github.com/switchyard/switchyard/internal/netnstest"
	"github.com/switchyard/switchyard/proxier/ipvs/ipvstest"
	"github.com/switchyard/switchyard/proxier/model"
)

// exerciseIPVS runs one scenario against any IPVS and returns, per step, the errno it answered (0 for
// success), so the fake can be held to the kernel's answers.
func exerciseIPVS(t *testing.T, h IPVS) []error {
	t.Helper()
	vs := vsKey{ip("10.96.0.10"), model.TCP, 80}
	svc := mobyService(vs, "rr", false, 0)
	other := mobyService(vsKey{ip("10.96.0.11"), model.TCP, 80}, "rr", false, 0)
	d1 := mobyDest(ipp("10.244.1.2:8080"), 1)
	steps := []func() error{
		func() error { return h.NewDestination(other, d1) },                                   // real server on a missing virtual server
		func() error { return h.NewService(svc) },                                             // ok
		func() error { return h.NewService(svc) },                                             // duplicate
		func() error { return h.UpdateService(other) },                                        // update missing
		func() error { return h.DelService(other) },                                           // delete missing
		func() error { return h.NewDestination(svc, d1) },                                     // ok
		func() error { return h.NewDestination(svc, d1) },                                     // duplicate real server
		func() error { return h.UpdateDestination(svc, mobyDest(ipp("10.244.1.3:8080"), 1)) }, // update missing real server
		func() error { return h.DelDestination(svc, mobyDest(ipp("10.244.1.3:8080"), 1)) },    // delete missing real server
		func() error { return h.UpdateDestination(svc, mobyDest(ipp("10.244.1.2:8080"), 0)) }, // weight 0: ok
		func() error {
			return h.NewService(mobyService(vsKey{ip("10.96.0.12"), model.TCP, 80}, "nosuch", false, 0))
		}, // unknown scheduler
		func() error { return h.UpdateService(mobyService(vs, "wrr", true, 60)) }, // ok: persistence on
		func() error { return h.DelService(svc) },                                 // ok, takes its real server
		func() error { return h.DelDestination(svc, d1) },                         // its real server is gone with it
	}
	var out []error
	for _, s := range steps {
		err := s()
		var errno unix.Errno
		if err != nil && !errors.As(err, &errno) {
			t.Fatalf("step %d: non-errno error %v", len(out), err)
		}
		out = append(out, errno)
	}
	return out
}

var wantIPVSAnswers = []error{unix.ESRCH, unix.Errno(0), unix.EEXIST, unix.ESRCH, unix.ESRCH, unix.Errno(0), unix.EEXIST,
	unix.ENOENT, unix.ENOENT, unix.Errno(0), unix.ENOENT, unix.Errno(0), unix.Errno(0), unix.ESRCH}

func compareAnswers(t *testing.T, got []error) {
	t.Helper()
	if len(got) != len(wantIPVSAnswers) {
		t.Fatalf("%d answers, want %d", len(got), len(wantIPVSAnswers))
	}
	for i := range got {
		if !errors.Is(got[i], wantIPVSAnswers[i]) {
			t.Errorf("step %d: got %v, want %v", i, got[i], wantIPVSAnswers[i])
		}
	}
}

func TestFakeIPVSAnswersLikeKernel(t *testing.T) {
	f := ipvstest.NewFakeIPVS()
	compareAnswers(t, exerciseIPVS(t, f))
	if len(f.Services) != 0 {
		t.Errorf("left behind:\n%s", f.Dump())
	}
}

// TestRealKernelIPVSAnswers runs the same scenario against the kernel (in hack/vm).
func TestRealKernelIPVSAnswers(t *testing.T) {
	requireIPVSKernel(t)
	ns := netnstest.New(t, "ipvs")
	h, err := mobyipvs.New(filepath.Join("/run/netns", ns.Name))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	got := exerciseIPVS(t, h)
	t.Logf("kernel answers: %v", got)
	compareAnswers(t, got)
}
