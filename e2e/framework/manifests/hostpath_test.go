package manifests

import (
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
)

// hostPathFixture is a temporary directory holding one thing of each kind a hostPath type checks.
type hostPathFixture struct{ dir, file, socket, missing string }

func newHostPathFixture(t *testing.T) hostPathFixture {
	t.Helper()
	root := t.TempDir()
	f := hostPathFixture{
		dir:     filepath.Join(root, "dir"),
		file:    filepath.Join(root, "file"),
		socket:  filepath.Join(root, "sock"),
		missing: filepath.Join(root, "missing"),
	}
	if err := os.Mkdir(f.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.file, []byte("content"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", f.socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return f
}

// blockDevice returns some block device under /dev, or "" when this machine shows none (a container
// may have none, and creating one needs root).
func blockDevice() string {
	entries, _ := os.ReadDir("/dev")
	for _, e := range entries {
		p := filepath.Join("/dev", e.Name())
		if st, err := os.Stat(p); err == nil && st.Mode().Type() == fs.ModeDevice {
			return p
		}
	}
	return ""
}

func TestPrepareHostPathChecksEachTypeAsTheKubeletDoes(t *testing.T) {
	f := newHostPathFixture(t)
	const charDevice = "/dev/null"
	cases := []struct {
		typ     v1.HostPathType
		path    string
		wantErr string // "" when the path is of the type's kind
	}{
		{v1.HostPathUnset, f.missing, ""}, // no check at all
		{v1.HostPathUnset, f.file, ""},
		{v1.HostPathDirectory, f.dir, ""},
		{v1.HostPathDirectory, f.file, "is not a directory"},
		{v1.HostPathDirectory, f.missing, "is not a directory"},
		{v1.HostPathDirectoryOrCreate, f.dir, ""},
		{v1.HostPathDirectoryOrCreate, f.file, "is not a directory"},
		{v1.HostPathFile, f.file, ""},
		{v1.HostPathFile, f.dir, "is not a file"},
		{v1.HostPathFile, f.missing, "is not a file"},
		{v1.HostPathFileOrCreate, f.file, ""},
		{v1.HostPathFileOrCreate, f.dir, "is not a file"},
		{v1.HostPathSocket, f.socket, ""},
		{v1.HostPathSocket, f.file, "is not a socket"},
		{v1.HostPathSocket, f.missing, "is not a socket"},
		{v1.HostPathCharDev, charDevice, ""},
		{v1.HostPathCharDev, f.file, "is not a character device"},
		{v1.HostPathCharDev, f.missing, "is not a character device"},
		{v1.HostPathBlockDev, charDevice, "is not a block device"},
		{v1.HostPathBlockDev, f.dir, "is not a block device"},
		{v1.HostPathBlockDev, f.missing, "is not a block device"},
		{"Fifo", f.file, `unknown type "Fifo"`},
	}
	for _, c := range cases {
		err := PrepareHostPath(c.path, c.typ)
		switch {
		case c.wantErr == "" && err != nil:
			t.Errorf("PrepareHostPath(%s, %q): %v, want no error", c.path, c.typ, err)
		case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
			t.Errorf("PrepareHostPath(%s, %q) = %v, want an error saying %q", c.path, c.typ, err, c.wantErr)
		}
	}
	if _, err := os.Lstat(f.missing); err == nil {
		t.Errorf("a check-only type created %s", f.missing)
	}
	if b := blockDevice(); b == "" {
		t.Log("no block device under /dev: BlockDevice is only checked against paths of other kinds")
	} else if err := PrepareHostPath(b, v1.HostPathBlockDev); err != nil {
		t.Errorf("PrepareHostPath(%s, BlockDevice): %v", b, err)
	}
	if content, err := os.ReadFile(f.file); err != nil || string(content) != "content" {
		t.Errorf("FileOrCreate changed the existing file %s: %q, %v", f.file, content, err)
	}
}

func TestPrepareHostPathCreatesWhatTheOrCreateTypesAllow(t *testing.T) {
	f := newHostPathFixture(t)
	defer setUmask(0o022)()

	dir := filepath.Join(f.missing, "a", "b")
	if err := PrepareHostPath(dir, v1.HostPathDirectoryOrCreate); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{f.missing, filepath.Join(f.missing, "a"), dir} {
		if st, err := os.Stat(d); err != nil || !st.IsDir() || st.Mode().Perm() != 0o755 {
			t.Errorf("DirectoryOrCreate made %s: %v, %v; want a directory with mode 0755", d, st, err)
		}
	}

	lock := filepath.Join(f.dir, "xtables.lock")
	if err := PrepareHostPath(lock, v1.HostPathFileOrCreate); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(lock); err != nil || !st.Mode().IsRegular() || st.Mode().Perm() != 0o644 || st.Size() != 0 {
		t.Errorf("FileOrCreate made %s: %v, %v; want an empty file with mode 0644", lock, st, err)
	}
	// Like the kubelet, FileOrCreate does not create the file's parent directory.
	orphan := filepath.Join(f.dir, "no-such-dir", "xtables.lock")
	if err := PrepareHostPath(orphan, v1.HostPathFileOrCreate); err == nil {
		t.Errorf("FileOrCreate created %s although its parent directory does not exist", orphan)
	}
}

// setUmask sets the process umask (the kubelet's is 022, which the modes above assume) and returns
// a function that restores the previous one.
func setUmask(mask int) func() {
	old := syscall.Umask(mask)
	return func() { syscall.Umask(old) }
}

// A DaemonSet's hostPath types reach PrepareMountpoints: a FileOrCreate volume whose file is missing
// gets an empty one (a fresh machine's /run/xtables.lock), a Directory volume that is a file fails
// the container before it starts.
func TestPrepareMountpointsHonoursTheManifestsHostPathTypes(t *testing.T) {
	f := newHostPathFixture(t)
	fileOrCreate, directory := v1.HostPathFileOrCreate, v1.HostPathDirectory
	lock := filepath.Join(f.dir, "xtables.lock")
	ds := &appsv1.DaemonSet{}
	ds.Name = "switchyard"
	ds.Spec.Template.Spec.Volumes = []v1.Volume{
		{Name: "xtables-lock", VolumeSource: v1.VolumeSource{HostPath: &v1.HostPathVolumeSource{Path: lock, Type: &fileOrCreate}}},
		{Name: "wrong-kind", VolumeSource: v1.VolumeSource{HostPath: &v1.HostPathVolumeSource{Path: f.file, Type: &directory}}},
	}
	c := v1.Container{Name: "switchyard", Command: []string{"switchyard"}, VolumeMounts: []v1.VolumeMount{{Name: "xtables-lock", MountPath: lock}}}

	run, err := PlanContainer(ds, &c, "node", "/bin/true", nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	undo, err := run.PrepareMountpoints()
	if err != nil {
		t.Fatal(err)
	}
	undo()
	if st, err := os.Stat(lock); err != nil || !st.Mode().IsRegular() || st.Size() != 0 {
		t.Errorf("after PrepareMountpoints and its undo, %s is %v, %v; want the empty file FileOrCreate made", lock, st, err)
	}

	c.VolumeMounts = append(c.VolumeMounts, v1.VolumeMount{Name: "wrong-kind", MountPath: f.file})
	if run, err = PlanContainer(ds, &c, "node", "/bin/true", nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := run.PrepareMountpoints(); err == nil || !strings.Contains(err.Error(), f.file+" is not a directory") {
		t.Errorf("PrepareMountpoints with a Directory volume that is a file: %v, want a type check error", err)
	}
}
