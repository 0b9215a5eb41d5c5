package podnet

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"k8s.io/klog/v2"

	"github.com/switchyard/switchyard/podnet/cni"
)

// ConflistName is the file InstallCNI writes into --cni-conf-dir. The "10-" prefix sorts it ahead of
// most other networks, as the runtime uses the first file in lexical order.
const ConflistName = "10-switchyard.conflist"

// Conflist renders the CNI network configuration list for cfg.
func Conflist(cfg Config) ([]byte, error) {
	plugin := map[string]any{
		"type":        cni.PluginType,
		"bridge":      cfg.Bridge,
		"subnetFile":  cfg.SubnetFile,
		"dataDir":     cfg.CNIDataDir,
		"hairpinMode": true,
	}
	list := map[string]any{
		"cniVersion": "1.0.0",
		"name":       cni.NetworkName,
		"plugins":    []any{plugin},
	}
	data, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

// InstallCNI copies the plugin binary at pluginBinary into cfg.CNIBinDir as switchyard-cni and writes
// the conflist into cfg.CNIConfDir, as flannel's DaemonSet does. An empty directory skips that part.
// Both files are replaced atomically and only when their content differs, so a running container
// runtime never executes or reads a half-written file.
func InstallCNI(cfg Config, pluginBinary string) error {
	if cfg.CNIBinDir != "" {
		bin, err := os.ReadFile(pluginBinary)
		if err != nil {
			return fmt.Errorf("read CNI plugin binary: %w", err)
		}
		dst := filepath.Join(cfg.CNIBinDir, cni.PluginType)
		if changed, err := replaceFile(dst, bin, 0o755); err != nil {
			return fmt.Errorf("install CNI plugin: %w", err)
		} else if changed {
			klog.InfoS("Installed CNI plugin", "path", dst)
		}
	}
	if cfg.CNIConfDir != "" {
		conf, err := Conflist(cfg)
		if err != nil {
			return err
		}
		dst := filepath.Join(cfg.CNIConfDir, ConflistName)
		if changed, err := replaceFile(dst, conf, 0o644); err != nil {
			return fmt.Errorf("install CNI conflist: %w", err)
		} else if changed {
			klog.InfoS("Installed CNI network configuration", "path", dst)
		}
	}
	return nil
}

func replaceFile(path string, data []byte, mode os.FileMode) (bool, error) {
	if cur, err := os.Open(path); err == nil {
		same, _ := sameContent(cur, data)
		cur.Close()
		if same {
			return false, nil
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return false, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return false, err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), mode)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	return err == nil, err
}

func sameContent(f *os.File, data []byte) (bool, error) {
	cur, err := io.ReadAll(io.LimitReader(f, int64(len(data))+1))
	if err != nil {
		return false, err
	}
	return bytes.Equal(cur, data), nil
}
