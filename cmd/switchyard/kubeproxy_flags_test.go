package main

import (
	"bufio"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// helpFlag is one flag of kube-proxy's --help: its name and the type its help shows ("" for bools).
type helpFlag struct{ name, typ string }

var helpFlagLine = regexp.MustCompile(`^\s+(?:-\w, )?--([a-z0-9][a-z0-9-]*)(?: (\S+))?\s\s`)

// kubeProxyHelpFlags reads testdata/kube-proxy-help.txt (hack/k8s/kube-proxy-help.sh writes it).
func kubeProxyHelpFlags(t *testing.T) []helpFlag {
	t.Helper()
	f, err := os.Open("testdata/kube-proxy-help.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []helpFlag
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := helpFlagLine.FindStringSubmatch(sc.Text()); m != nil {
			out = append(out, helpFlag{m[1], m[2]})
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) < 40 {
		t.Fatalf("found only %d flags in the help text; has its layout changed?", len(out))
	}
	return out
}

// helpValue is a valid value of each type kube-proxy's help shows; flags whose value must be one
// of a few, or a file, have their own.
func helpValue(t *testing.T, f helpFlag, kubeadmConfig string) string {
	t.Helper()
	switch f.name {
	case "config":
		return kubeadmConfig
	case "write-config-to":
		return filepath.Join(t.TempDir(), "out.yaml")
	case "logging-format":
		return "text"
	case "cluster-cidr":
		return "10.244.0.0/16"
	case "v":
		return "0"
	}
	values := map[string]string{
		"":               "true",
		"string":         "x",
		"int32":          "1",
		"float32":        "1.5",
		"duration":       "1s",
		"strings":        "10.0.0.0/8",
		"ip":             "10.0.0.1",
		"ipport":         "127.0.0.1:10000",
		"mapStringBool":  "SomeGate=true",
		"LocalMode":      "ClusterCIDR",
		"ProxyMode":      "iptables",
		"pattern=N,...":  "switchyard=0",
		"version[=true]": "v1.37.2", // sets the reported version; true or raw would print it and stop
		"quantity":       "1Ki",
		"Level":          "0",
	}
	v, ok := values[f.typ]
	if !ok {
		t.Fatalf("--%s has type %q, which this test has no value for", f.name, f.typ)
	}
	return v
}

// TestKubeProxyHelpFlagsParse: every flag of the real kube-proxy's --help, each with a value of
// its type and all on one command line together with kubeadm's configuration file, parses in
// Switchyard, and the start-up warning lists exactly the ones Switchyard does not act on.
func TestKubeProxyHelpFlagsParse(t *testing.T) {
	kubeadmConfig := configMapFile(t, "testdata/kubeadm-v1.37-kube-proxy-configmap.yaml", "config.conf")
	var args []string
	for _, f := range kubeProxyHelpFlags(t) {
		if f.name == "help" {
			continue // TestHelpExitsCleanly
		}
		arg := "--" + f.name + "=" + helpValue(t, f, kubeadmConfig)
		if _, _, err := parseFlags([]string{arg}); err != nil {
			t.Errorf("%s: %v", arg, err)
		}
		args = append(args, arg)
	}
	opts, _, err := parseFlags(args)
	if err != nil {
		t.Fatalf("%v\n%s", err, strings.Join(args, " "))
	}
	want := []string{"--bind-address", "--bind-address-hard-fail", "--feature-gates", "--show-hidden-metrics-for-version", "--version",
		"--log-text-split-stream", "--log-text-info-buffer-size", "--log-json-split-stream", "--log-json-info-buffer-size"}
	if got := settingNames(opts.IgnoredSettings()); !reflect.DeepEqual(got, sorted(want)) {
		t.Errorf("the warning lists\n%q\nwant\n%q", got, sorted(want))
	}
	// The honoured ones arrived.
	if opts.KubeAPIQPS != 1.5 || opts.KubeAPIBurst != 1 || opts.KubeAPIContentType != "x" || opts.ConfigSyncPeriod != time.Second ||
		opts.OOMScoreAdj != 1 || !opts.InitOnly || opts.Logging.FlushFrequency != time.Second {
		t.Errorf("options %+v", opts)
	}
}

// settingNames are the flags (or file fields) that IgnoredSettings' lines name, sorted.
func settingNames(lines []string) []string {
	var out []string
	for _, l := range lines {
		out = append(out, strings.FieldsFunc(l, func(r rune) bool { return r == '=' || r == ' ' })[0])
	}
	return sorted(out)
}

func sorted(s []string) []string {
	s = append([]string(nil), s...)
	sort.Strings(s)
	return s
}

// TestKubeadmConfigMapsStart: kubeadm's kube-proxy ConfigMaps load, with the flags kubeadm's
// DaemonSet passes, and nothing they ask for goes unhonoured (the conntrack sysctls and
// localhost NodePorts included).
func TestKubeadmConfigMapsStart(t *testing.T) {
	for _, manifest := range []string{"testdata/kubeadm-kube-proxy-configmap.yaml", "testdata/kubeadm-v1.37-kube-proxy-configmap.yaml"} {
		t.Run(filepath.Base(manifest), func(t *testing.T) {
			path := configMapFile(t, manifest, "config.conf")
			opts, _, err := parseFlags([]string{"--config=" + path, "--hostname-override=node-a"})
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			if got := settingNames(opts.IgnoredSettings()); !reflect.DeepEqual(got, want) {
				t.Errorf("the warning lists %q, want %q", got, want)
			}
		})
	}
}

func TestUnknownFlagFails(t *testing.T) {
	_, _, err := parseFlags([]string{"--hostname-override=a", "--no-such-flag=1"})
	if err == nil || !strings.Contains(err.Error(), "unknown flag: --no-such-flag") {
		t.Fatalf("error %v", err)
	}
}

func TestHelpExitsCleanly(t *testing.T) {
	stdout := os.Stdout
	defer func() { os.Stdout = stdout }()
	os.Stdout, _ = os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if _, _, err := parseFlags([]string{"--help"}); err != pflag.ErrHelp {
		t.Fatalf("--help: %v", err)
	}
}

// TestUnderscoresInFlagNames: kube-proxy takes --kube_api_qps for --kube-api-qps, and so does Switchyard.
func TestUnderscoresInFlagNames(t *testing.T) {
	opts, _, err := parseFlags([]string{"--kube_api_qps=7", "--hostname_override=a"})
	if err != nil || opts.KubeAPIQPS != 7 || opts.HostnameOverride != "a" {
		t.Fatalf("opts %+v, err %v", opts, err)
	}
}

// TestDeprecatedPorts: --healthz-port and --metrics-port, hidden in kube-proxy's help, are taken
// as kube-proxy takes them: 0 turns the server off, another port completes an address without one,
// and an address with a port keeps it (which the warning then says).
func TestDeprecatedPorts(t *testing.T) {
	for _, tc := range []struct {
		args                   []string
		healthz, metrics       string
		healthzIgn, metricsIgn bool
	}{
		{nil, "0.0.0.0:10256", "127.0.0.1:10249", false, false},
		{[]string{"--healthz-port=0", "--metrics-port=0"}, "", "", false, false},
		{[]string{"--healthz-bind-address=10.0.0.1", "--healthz-port=12345", "--metrics-bind-address=0.0.0.0"}, "10.0.0.1:12345", "0.0.0.0:10249", false, false},
		{[]string{"--healthz-port=12345", "--metrics-port=12346"}, "0.0.0.0:10256", "127.0.0.1:10249", true, true},
	} {
		opts, _, err := parseFlags(tc.args)
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		ignored := strings.Join(opts.IgnoredSettings(), "\n")
		if opts.HealthzBindAddress != tc.healthz || opts.MetricsBindAddress != tc.metrics ||
			strings.Contains(ignored, "--healthz-port") != tc.healthzIgn || strings.Contains(ignored, "--metrics-port") != tc.metricsIgn {
			t.Errorf("%v: healthz %q metrics %q, warning %q", tc.args, opts.HealthzBindAddress, opts.MetricsBindAddress, ignored)
		}
	}
}

// TestVersionStopsBeforeTheRest: --version, like kube-proxy's, answers even when the rest of the
// command line would not start the proxy.
func TestVersionStopsBeforeTheRest(t *testing.T) {
	opts, _, err := parseFlags([]string{"--version", "--config=/does/not/exist"})
	if err != nil || opts.Version != "true" {
		t.Fatalf("opts %+v, err %v", opts, err)
	}
	var b strings.Builder
	printVersion(&b, false)
	if !strings.HasPrefix(b.String(), "Switchyard ") {
		t.Errorf("--version printed %q", b.String())
	}
}

func TestOOMScoreAdjIsWritten(t *testing.T) {
	path := filepath.Join(t.TempDir(), "oom_score_adj")
	if err := applyOOMScoreAdj(path, -999); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "-999" {
		t.Errorf("wrote %q", b)
	}
	if err := applyOOMScoreAdj(filepath.Join(path, "missing", "file"), 0); err == nil {
		t.Error("no error for an unwritable file")
	}
}

func TestAPIClientFlags(t *testing.T) {
	for _, tc := range []struct {
		args                 []string
		qps                  float32
		burst                int
		contentType, accepts string
	}{
		{nil, 5, 10, "application/vnd.kubernetes.protobuf", "application/vnd.kubernetes.protobuf,application/json"},
		{[]string{"--kube-api-qps=50", "--kube-api-burst=100", "--kube-api-content-type=application/json"}, 50, 100, "application/json", "application/json"},
	} {
		opts, _, err := parseFlags(append([]string{"--master=https://10.0.0.1:6443"}, tc.args...))
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := restConfig(opts)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.QPS != tc.qps || cfg.Burst != tc.burst || cfg.ContentType != tc.contentType || cfg.AcceptContentTypes != tc.accepts {
			t.Errorf("%v: QPS %v burst %d content type %q accepts %q", tc.args, cfg.QPS, cfg.Burst, cfg.ContentType, cfg.AcceptContentTypes)
		}
	}
}
