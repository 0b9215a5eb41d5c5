package manifests

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	v1 "k8s.io/api/core/v1"
)

// PrepareHostPath does what the kubelet does with a hostPath volume of type t at path before the
// runtime bind-mounts it: DirectoryOrCreate and FileOrCreate create what is missing (a directory
// with mode 0755, an empty file with mode 0644; like the kubelet, FileOrCreate does not create the
// file's parent directory), and every type but the empty one then checks that path is of its kind,
// so a manifest whose volume is of the wrong kind fails here as its pod would on a node. What it
// creates stays, as on a node.
func PrepareHostPath(path string, t v1.HostPathType) error {
	switch t {
	case v1.HostPathUnset:
		return nil
	case v1.HostPathDirectoryOrCreate:
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			if err := os.MkdirAll(path, 0o755); err != nil {
				return fmt.Errorf("hostPath %s (%s): %w", path, t, err)
			}
		}
	case v1.HostPathFileOrCreate:
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o644)
			if err != nil {
				return fmt.Errorf("hostPath %s (%s): %w", path, t, err)
			}
			if err := f.Close(); err != nil {
				return fmt.Errorf("hostPath %s (%s): %w", path, t, err)
			}
		}
	}
	kind, ok := hostPathKinds[t]
	if !ok {
		return fmt.Errorf("hostPath %s: unknown type %q", path, t)
	}
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("hostPath type check failed: %s is not %s: %w", path, kind.what, err)
	}
	if !kind.is(st.Mode()) {
		return fmt.Errorf("hostPath type check failed: %s is not %s (mode %s)", path, kind.what, st.Mode())
	}
	return nil
}

// hostPathKinds says, per hostPath type, what the path must be once the kubelet has created what
// the type lets it create.
var hostPathKinds = map[v1.HostPathType]struct {
	what string
	is   func(fs.FileMode) bool
}{
	v1.HostPathDirectoryOrCreate: {"a directory", fs.FileMode.IsDir},
	v1.HostPathDirectory:         {"a directory", fs.FileMode.IsDir},
	v1.HostPathFileOrCreate:      {"a file", fs.FileMode.IsRegular},
	v1.HostPathFile:              {"a file", fs.FileMode.IsRegular},
	v1.HostPathSocket:            {"a socket", func(m fs.FileMode) bool { return m.Type() == fs.ModeSocket }},
	v1.HostPathCharDev:           {"a character device", func(m fs.FileMode) bool { return m.Type() == fs.ModeDevice|fs.ModeCharDevice }},
	v1.HostPathBlockDev:          {"a block device", func(m fs.FileMode) bool { return m.Type() == fs.ModeDevice }},
}
