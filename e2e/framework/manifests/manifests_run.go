package manifests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
)

// ServiceAccountDir is where the kubelet mounts a pod's service account token and CA. kubeadm's
// kube-proxy kubeconfig.conf (reused by Switchyard's DaemonSet) reads both from there.
const ServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// ContainerRun starts one container of a DaemonSet on this machine the way a container runtime with
// hostNetwork would, minus the image: inside a network namespace that stands for the node, in a
// private mount namespace where each volume is bind-mounted at its mountPath, /proc/sys and (with
// readOnlyRootFilesystem) / are read-only unless the container is privileged, and the process keeps
// only the capabilities its securityContext adds. So a manifest that asks for too little privilege
// fails here as it would on a node.
type ContainerRun struct {
	NetNS        string
	Argv         []string                   // the container's command line, argv[0] already replaced by a local binary
	Binds        map[string]string          // mountPath -> local path bind-mounted there
	HostPathType map[string]v1.HostPathType // mountPath -> type of the hostPath volume mounted there
	ReadOnly     map[string]bool            // mountPaths mounted read-only
	Caps         []string                   // capabilities kept, e.g. "net_admin"; ignored when Privileged
	Privileged   bool
	ReadOnlyRoot bool
	NoNewPrivs   bool
}

// PlanContainer turns container c of ds into a ContainerRun. binary replaces the image's argv[0].
// sources maps volume names to the local path to mount for them; hostPath volumes without an entry
// are the host's own path (e.g. /lib/modules, /run/xtables.lock), every other volume needs one. A
// hostPath volume's type applies to its local path either way: that path stands for the node's.
// extra adds mounts the kubelet would add (the service account token directory).
func PlanContainer(ds *appsv1.DaemonSet, c *v1.Container, netns, binary string, fieldValues, sources, extra map[string]string) (*ContainerRun, error) {
	argv, err := Argv(c, fieldValues)
	if err != nil {
		return nil, err
	}
	if len(argv) == 0 {
		return nil, fmt.Errorf("container %s has no command", c.Name)
	}
	argv[0] = binary
	mounts, err := Mounts(ds, c)
	if err != nil {
		return nil, err
	}
	r := &ContainerRun{NetNS: netns, Argv: argv, Binds: map[string]string{}, ReadOnly: map[string]bool{}, HostPathType: map[string]v1.HostPathType{}}
	for _, m := range mounts {
		src, ok := sources[m.Name]
		switch {
		case ok:
		case m.Volume.HostPath != nil:
			src = m.Volume.HostPath.Path
		default:
			return nil, fmt.Errorf("volume %s (mounted at %s) needs a local source", m.Name, m.MountPath)
		}
		r.Binds[m.MountPath] = src
		r.ReadOnly[m.MountPath] = m.ReadOnly
		if hp := m.Volume.HostPath; hp != nil && hp.Type != nil {
			r.HostPathType[m.MountPath] = *hp.Type
		}
	}
	for path, src := range extra {
		r.Binds[path] = src
		r.ReadOnly[path] = true
	}
	if sc := c.SecurityContext; sc != nil {
		r.Privileged = sc.Privileged != nil && *sc.Privileged
		r.ReadOnlyRoot = sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem
		r.NoNewPrivs = sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation
		if sc.Capabilities != nil {
			for _, d := range sc.Capabilities.Drop {
				if d != "ALL" {
					return nil, fmt.Errorf("container %s drops %s: only drop [ALL] is emulated", c.Name, d)
				}
			}
			if len(sc.Capabilities.Drop) == 0 {
				return nil, fmt.Errorf("container %s keeps the runtime's default capabilities; emulating those is not supported, drop ALL", c.Name)
			}
			for _, a := range sc.Capabilities.Add {
				r.Caps = append(r.Caps, strings.ToLower(string(a)))
			}
		}
	}
	return r, nil
}

// PrepareMountpoints first prepares each hostPath source as the kubelet does for its type (see
// PrepareHostPath: /run/xtables.lock is FileOrCreate, so a fresh machine gets an empty lock file).
// Then it creates the mountpoints that do not exist on this machine (e.g. /var/lib/kube-proxy), as
// a container runtime creates them in the container's root. The returned function removes the
// mountpoints it created; it only removes empty directories, and leaves hostPath sources alone.
func (r *ContainerRun) PrepareMountpoints() (func(), error) {
	var created []string
	undo := func() {
		for i := len(created) - 1; i >= 0; i-- {
			_ = os.Remove(created[i])
		}
	}
	for _, dst := range sortedKeys(r.Binds) {
		src := r.Binds[dst]
		if err := PrepareHostPath(src, r.HostPathType[dst]); err != nil {
			undo()
			return nil, fmt.Errorf("volume at %s: %w", dst, err)
		}
		st, err := os.Stat(src)
		if err != nil {
			undo()
			return nil, fmt.Errorf("mount source %s: %w", src, err)
		}
		if _, err := os.Stat(dst); err == nil {
			continue
		}
		if !st.IsDir() {
			undo()
			return nil, fmt.Errorf("mountpoint %s for file %s does not exist", dst, src)
		}
		// Create and record each missing ancestor, so undo removes exactly what was made.
		var missing []string
		for d := dst; ; d = filepath.Dir(d) {
			if _, err := os.Lstat(d); err == nil {
				break
			}
			missing = append([]string{d}, missing...)
		}
		for _, d := range missing {
			if err := os.Mkdir(d, 0o755); err != nil {
				undo()
				return nil, fmt.Errorf("create mountpoint %s: %w", d, err)
			}
			created = append(created, d)
		}
	}
	return undo, nil
}

// CombinedOutput runs the container to completion, as Command starts it, between PrepareMountpoints
// and its undo, and returns what it printed.
func (r *ContainerRun) CombinedOutput() ([]byte, error) {
	undo, err := r.PrepareMountpoints()
	if err != nil {
		return nil, err
	}
	defer undo()
	return r.Command().CombinedOutput()
}

// Command returns the command that starts the container. Its process becomes the container's
// process (each step execs the next), so signalling it signals the daemon.
func (r *ContainerRun) Command() *exec.Cmd {
	var s strings.Builder
	s.WriteString("set -e\nmount --make-rprivate /\n")
	for _, dst := range sortedKeys(r.Binds) {
		fmt.Fprintf(&s, "mount --bind %s %s\n", quote(r.Binds[dst]), quote(dst))
		if r.ReadOnly[dst] {
			fmt.Fprintf(&s, "mount -o remount,bind,ro %s\n", quote(dst))
		}
	}
	if !r.Privileged {
		// What runc does for every unprivileged container: /proc/sys is read-only.
		s.WriteString("mount --bind /proc/sys /proc/sys\nmount -o remount,bind,ro /proc/sys\n")
	}
	if r.ReadOnlyRoot {
		s.WriteString("mount -o remount,bind,ro /\n")
	}
	s.WriteString("exec setpriv")
	if !r.Privileged {
		caps := "-all"
		for _, c := range r.Caps {
			caps += ",+" + c
		}
		fmt.Fprintf(&s, " --bounding-set=%s --inh-caps=-all", caps)
	}
	if r.NoNewPrivs {
		s.WriteString(" --no-new-privs")
	}
	s.WriteString(" -- \"$@\"\n")
	args := append([]string{"netns", "exec", r.NetNS, "sh", "-c", s.String(), "container"}, r.Argv...)
	return exec.Command("ip", args...)
}

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func sortedKeys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
