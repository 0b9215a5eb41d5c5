// Package manifests is the e2e harness for Switchyard's deployment (deploy/): it renders each
// overlay with the kustomize library that `kubectl kustomize` embeds, decodes and looks up its
// objects, and runs a DaemonSet's containers on this machine as a kubelet and a container runtime
// would (manifests_run.go, hostpath.go). The checks themselves are the suite in e2e/deploy. The
// package carries no build tag so that `go vet ./...` and the unit tests keep it compiling.
package manifests

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	sigsyaml "sigs.k8s.io/yaml"
)

// Overlays are the variants under deploy/overlays, each a complete deployment.
var Overlays = []string{"iptables", "ipvs", "pod-network"}

// OverlayProxyMode is the --proxy-mode each overlay pins.
var OverlayProxyMode = map[string]string{"iptables": "iptables", "ipvs": "ipvs", "pod-network": "iptables"}

// Manifest is one overlay rendered by kustomize.
type Manifest struct {
	Overlay string
	YAML    []byte // the rendered multi-document YAML, as `kubectl kustomize` prints it
	Objects []*unstructured.Unstructured
}

// RepoRoot finds the repository root (the directory holding deploy/) from the working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "deploy", "base", "kustomization.yaml")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no deploy/base/kustomization.yaml above %s", dir)
		}
	}
}

// KubeadmConfigMap reads the kube-proxy ConfigMap as kubeadm writes it
// (cmd/switchyard/testdata/kubeadm-kube-proxy-configmap.yaml), the one the migration guide starts from.
func KubeadmConfigMap(repo string) (*v1.ConfigMap, error) {
	path := filepath.Join(repo, "cmd", "switchyard", "testdata", "kubeadm-kube-proxy-configmap.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var cm v1.ConfigMap
	if err := sigsyaml.UnmarshalStrict(data, &cm); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &cm, nil
}

// BuildOverlay renders deploy/overlays/<overlay> with the kustomize library that `kubectl kustomize`
// embeds, in process, and decodes the result.
func BuildOverlay(repo, overlay string) (*Manifest, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	res, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join(repo, "deploy", "overlays", overlay))
	if err != nil {
		return nil, fmt.Errorf("kustomize build deploy/overlays/%s: %w", overlay, err)
	}
	data, err := res.AsYaml()
	if err != nil {
		return nil, fmt.Errorf("kustomize build deploy/overlays/%s: render: %w", overlay, err)
	}
	objs, err := DecodeObjects(data)
	if err != nil {
		return nil, fmt.Errorf("deploy/overlays/%s: %w", overlay, err)
	}
	return &Manifest{Overlay: overlay, YAML: data, Objects: objs}, nil
}

// DecodeObjects splits multi-document YAML into objects, rejecting documents without kind or name.
func DecodeObjects(data []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*unstructured.Unstructured
	for i := 0; ; i++ {
		var m map[string]any
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return out, nil
		} else if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if len(m) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		if u.GetKind() == "" || u.GetName() == "" {
			return nil, fmt.Errorf("document %d has no kind or no metadata.name", i)
		}
		out = append(out, u)
	}
}

// Find returns the object of kind and name.
func (m *Manifest) Find(kind, name string) (*unstructured.Unstructured, error) {
	for _, o := range m.Objects {
		if o.GetKind() == kind && o.GetName() == name {
			return o, nil
		}
	}
	return nil, fmt.Errorf("overlay %s has no %s %s", m.Overlay, kind, name)
}

// Typed converts the object of kind and name into out (e.g. *appsv1.DaemonSet).
func (m *Manifest) Typed(kind, name string, out any) error {
	u, err := m.Find(kind, name)
	if err != nil {
		return err
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, out, true); err != nil {
		return fmt.Errorf("overlay %s: %s %s: %w", m.Overlay, kind, name, err)
	}
	return nil
}

// DaemonSet is the overlay's switchyard DaemonSet.
func (m *Manifest) DaemonSet() (*appsv1.DaemonSet, error) {
	var ds appsv1.DaemonSet
	return &ds, m.Typed("DaemonSet", "switchyard", &ds)
}

// ClusterRole is the overlay's switchyard ClusterRole.
func (m *Manifest) ClusterRole() (*rbacv1.ClusterRole, error) {
	var cr rbacv1.ClusterRole
	return &cr, m.Typed("ClusterRole", "switchyard", &cr)
}

// Container returns the pod template's container (or init container) called name.
func Container(ds *appsv1.DaemonSet, name string) (*v1.Container, error) {
	spec := &ds.Spec.Template.Spec
	for _, list := range [][]v1.Container{spec.Containers, spec.InitContainers} {
		for i := range list {
			if list[i].Name == name {
				return &list[i], nil
			}
		}
	}
	return nil, fmt.Errorf("DaemonSet %s has no container %s", ds.Name, name)
}

// Argv is the command line the kubelet would start container c with: command then args, with every
// $(VAR) replaced by the container's environment variable VAR. fieldValues gives the values of the
// downward-API fields the environment refers to (e.g. "spec.nodeName"). Unlike the kubelet, which
// leaves an unknown $(VAR) as it is, an unresolvable reference to a variable's name is an error here:
// in a manifest it is a typo. A $(...) that names no variable (a script's $(cmd) or $((n + 1)))
// passes through unchanged, as with the kubelet.
func Argv(c *v1.Container, fieldValues map[string]string) ([]string, error) {
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.FieldRef != nil:
			v, ok := fieldValues[e.ValueFrom.FieldRef.FieldPath]
			if !ok {
				return nil, fmt.Errorf("env %s: no value given for field %s", e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
			env[e.Name] = v
		default:
			return nil, fmt.Errorf("env %s: only values and fieldRefs are supported", e.Name)
		}
	}
	var out []string
	for _, a := range append(append([]string(nil), c.Command...), c.Args...) {
		s, err := expand(a, env)
		if err != nil {
			return nil, fmt.Errorf("argument %q: %w", a, err)
		}
		out = append(out, s)
	}
	return out, nil
}

// expand applies the kubelet's $(VAR) syntax: "$$" is a literal "$", "$(NAME)" is NAME's value.
// envVarName is what the API server accepts as an environment variable's name: a $(NAME) of this shape
// that the container lacks is a typo.
var envVarName = regexp.MustCompile(`^[-._a-zA-Z][-._a-zA-Z0-9]*$`)

func expand(s string, env map[string]string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i:], ')')
			if end < 0 {
				return "", fmt.Errorf("unterminated $(")
			}
			name := s[i+2 : i+end]
			v, ok := env[name]
			switch {
			case ok:
				b.WriteString(v)
			case envVarName.MatchString(name):
				return "", fmt.Errorf("$(%s) is not in the container's env", name)
			default:
				// Not a variable's name (a shell script's $(cmd) or $((n + 1))): the kubelet leaves
				// such a reference as it is, up to its first ')', and so does this.
				b.WriteString(s[i : i+end+1])
			}
			i += end
		default:
			b.WriteByte('$')
		}
	}
	return b.String(), nil
}

// Mount is a container's volume mount together with the volume it mounts.
type Mount struct {
	v1.VolumeMount
	Volume v1.Volume
}

// Mounts resolves c's volume mounts against the pod template's volumes.
func Mounts(ds *appsv1.DaemonSet, c *v1.Container) ([]Mount, error) {
	vols := map[string]v1.Volume{}
	for _, v := range ds.Spec.Template.Spec.Volumes {
		vols[v.Name] = v
	}
	var out []Mount
	for _, vm := range c.VolumeMounts {
		v, ok := vols[vm.Name]
		if !ok {
			return nil, fmt.Errorf("container %s mounts volume %s, which the pod does not define", c.Name, vm.Name)
		}
		out = append(out, Mount{VolumeMount: vm, Volume: v})
	}
	return out, nil
}

// Grant is one (API group, resource, verb) triple a ClusterRole allows.
type Grant struct{ Group, Resource, Verb string }

func (g Grant) String() string { return fmt.Sprintf("%s/%s:%s", g.Group, g.Resource, g.Verb) }

// Grants flattens a ClusterRole's rules. A wildcard or a resourceName/non-resource rule is an error:
// least privilege means every grant is spelled out.
func Grants(cr *rbacv1.ClusterRole) (map[Grant]bool, error) {
	out := map[Grant]bool{}
	for i, r := range cr.Rules {
		if len(r.ResourceNames) > 0 || len(r.NonResourceURLs) > 0 {
			return nil, fmt.Errorf("rule %d: resourceNames and nonResourceURLs are not expected", i)
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, verb := range r.Verbs {
					if g == "*" || res == "*" || verb == "*" {
						return nil, fmt.Errorf("rule %d grants a wildcard (%s/%s:%s)", i, g, res, verb)
					}
					out[Grant{g, res, verb}] = true
				}
			}
		}
	}
	return out, nil
}
