// Package kindconfig holds no code: its test checks the kind cluster config
// with kind's own config types, so a typo fails CI instead of `kind create
// cluster` on someone's laptop (no Docker engine runs where CI does).
package kindconfig

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	validator "github.com/containerd/nri/plugins/default-validator"
	toml "github.com/pelletier/go-toml"
	yaml "go.yaml.in/yaml/v3"
	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	sigsyaml "sigs.k8s.io/yaml"
)

// parseKind decodes a cluster config the way `kind create cluster
// --config` does (sigs.k8s.io/kind/pkg/internal/apis/config/encoding, which
// is internal): apiVersion and kind first, then a strict decode into the
// v1alpha4 types, where an unknown field is an error.
func parseKind(raw []byte) (*v1alpha4.Cluster, error) {
	var tm struct {
		Kind       string `yaml:"kind"`
		APIVersion string `yaml:"apiVersion"`
	}
	if err := yaml.Unmarshal(raw, &tm); err != nil {
		return nil, fmt.Errorf("kind / apiVersion: %w", err)
	}
	if tm.APIVersion != "kind.x-k8s.io/v1alpha4" || tm.Kind != "Cluster" {
		return nil, fmt.Errorf("unknown apiVersion %q kind %q", tm.APIVersion, tm.Kind)
	}
	cfg := &v1alpha4.Cluster{}
	d := yaml.NewDecoder(bytes.NewReader(raw))
	d.KnownFields(true)
	if err := d.Decode(cfg); err != nil {
		return nil, fmt.Errorf("unable to decode config: %w", err)
	}
	v1alpha4.SetDefaultsCluster(cfg)
	return cfg, nil
}

// nriKeys are containerd's [plugins."io.containerd.nri.v1.nri"] settings
// (containerd 2.x, internal/nri config): anything else is a typo that
// containerd would silently ignore.
var nriKeys = []string{
	"disable", "socket_path", "plugin_path", "plugin_config_path",
	"plugin_registration_timeout", "plugin_request_timeout", "disable_connections",
	"default_validator",
}

// validatorKeys are the default validator's settings, from NRI's own type.
func validatorKeys() []string {
	var keys []string
	t := reflect.TypeFor[validator.DefaultValidatorConfig]()
	for i := range t.NumField() {
		if k, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ","); k != "" {
			keys = append(keys, k)
		}
	}
	return keys
}

// nriPatch is what the kind config asks of containerd's NRI.
type nriPatch struct {
	disable          bool
	requestTimeout   time.Duration
	validatorEnabled bool
	required         []string
	tolerate         string
}

// checkNRIPatch parses one containerdConfigPatches entry with the TOML
// library kind merges them with, and rejects keys containerd does not know.
func checkNRIPatch(patch string) (nriPatch, error) {
	tree, err := toml.Load(patch)
	if err != nil {
		return nriPatch{}, fmt.Errorf("not TOML: %w", err)
	}
	nri, ok := tree.GetPath([]string{"plugins", "io.containerd.nri.v1.nri"}).(*toml.Tree)
	if !ok {
		return nriPatch{}, fmt.Errorf(`no [plugins."io.containerd.nri.v1.nri"] table`)
	}
	for _, k := range nri.Keys() {
		if !slices.Contains(nriKeys, k) {
			return nriPatch{}, fmt.Errorf("unknown NRI setting %q", k)
		}
	}
	var p nriPatch
	p.disable, _ = nri.Get("disable").(bool)
	if s, ok := nri.Get("plugin_request_timeout").(string); ok {
		if p.requestTimeout, err = time.ParseDuration(s); err != nil {
			return nriPatch{}, fmt.Errorf("plugin_request_timeout: %w", err)
		}
	}
	dv, ok := nri.Get("default_validator").(*toml.Tree)
	if !ok {
		return p, nil
	}
	for _, k := range dv.Keys() {
		if !slices.Contains(validatorKeys(), k) {
			return nriPatch{}, fmt.Errorf("unknown default_validator setting %q", k)
		}
	}
	// Decode into NRI's own type: a value of the wrong type fails here.
	var cfg validator.DefaultValidatorConfig
	if err := dv.Unmarshal(&cfg); err != nil {
		return nriPatch{}, fmt.Errorf("default_validator: %w", err)
	}
	p.validatorEnabled, p.required, p.tolerate = cfg.Enable, cfg.RequiredPlugins, cfg.TolerateMissingAnnotation
	return p, nil
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// chartValues reads the chart's values or the kind demo's values.
type chartValues struct {
	NRI struct {
		PluginName                       string `json:"pluginName"`
		DecisionTimeout                  string `json:"decisionTimeout"`
		TolerateMissingPluginsAnnotation string `json:"tolerateMissingPluginsAnnotation"`
	} `json:"nri"`
	HostNetwork        bool `json:"hostNetwork"`
	ContainerdFallback struct {
		Enabled bool `json:"enabled"`
	} `json:"containerdFallback"`
}

func readValues(t *testing.T, path string) chartValues {
	t.Helper()
	var v chartValues
	if err := sigsyaml.Unmarshal(readFile(t, path), &v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

func TestKindConfig(t *testing.T) {
	cfg, err := parseKind(readFile(t, "kind.yaml"))
	if err != nil {
		t.Fatalf("kind.yaml: %v", err)
	}
	chart := readValues(t, "../daemonset/chart/values.yaml")
	demo := readValues(t, "values-kind.yaml")

	// containerd: NRI on, the validator requiring the plugin, and a request
	// timeout above the default that the demo's decision timeout fits in.
	var found bool
	for i, patch := range cfg.ContainerdConfigPatches {
		p, err := checkNRIPatch(patch)
		if err != nil {
			t.Errorf("containerdConfigPatches[%d]: %v", i, err)
			continue
		}
		found = true
		if p.disable {
			t.Error("NRI is disabled")
		}
		if p.requestTimeout <= 2*time.Second || p.requestTimeout > 10*time.Second {
			t.Errorf("plugin_request_timeout %v: want above the 2s default and at most 10s (NRI requests are serialised per node)", p.requestTimeout)
		}
		decision, err := time.ParseDuration(demo.NRI.DecisionTimeout)
		if err != nil {
			t.Fatalf("values-kind.yaml nri.decisionTimeout: %v", err)
		}
		if decision >= p.requestTimeout {
			t.Errorf("the demo's decision timeout %v is not below plugin_request_timeout %v", decision, p.requestTimeout)
		}
		if !p.validatorEnabled || !slices.Contains(p.required, chart.NRI.PluginName) {
			t.Errorf("default validator enable=%v required_plugins=%q: want it on, requiring %q",
				p.validatorEnabled, p.required, chart.NRI.PluginName)
		}
		if p.tolerate != chart.NRI.TolerateMissingPluginsAnnotation || p.tolerate != demo.NRI.TolerateMissingPluginsAnnotation {
			t.Errorf("tolerate annotation %q in kind.yaml, %q in the chart, %q in the demo values",
				p.tolerate, chart.NRI.TolerateMissingPluginsAnnotation, demo.NRI.TolerateMissingPluginsAnnotation)
		}
	}
	if !found {
		t.Fatal("no containerdConfigPatches entry configures NRI")
	}

	// kind's containerd (2.3) sends no image digest, and its CNI waits for
	// the plugin: the demo must use the fallback and the host network.
	if !demo.ContainerdFallback.Enabled || !demo.HostNetwork {
		t.Errorf("values-kind.yaml: containerdFallback.enabled=%v hostNetwork=%v, want both true",
			demo.ContainerdFallback.Enabled, demo.HostNetwork)
	}

	checkStaticPodPatches(t, cfg, chart.NRI.TolerateMissingPluginsAnnotation)
}

// checkStaticPodPatches: kubeadm on every node reads the patches folder,
// which every node mounts, and it annotates each control-plane static pod.
func checkStaticPodPatches(t *testing.T, cfg *v1alpha4.Cluster, annotation string) {
	dirs := map[string]bool{}
	kinds := map[string]bool{}
	for i, p := range cfg.KubeadmConfigPatches {
		var doc struct {
			Kind    string `yaml:"kind"`
			Patches struct {
				Directory string `yaml:"directory"`
			} `yaml:"patches"`
		}
		d := yaml.NewDecoder(strings.NewReader(p))
		d.KnownFields(true)
		if err := d.Decode(&doc); err != nil {
			t.Errorf("kubeadmConfigPatches[%d]: %v", i, err)
			continue
		}
		kinds[doc.Kind] = true
		dirs[doc.Patches.Directory] = true
	}
	if !kinds["InitConfiguration"] || !kinds["JoinConfiguration"] || len(dirs) != 1 {
		t.Fatalf("kubeadm patches: kinds %v, directories %v; want Init and Join naming one folder", kinds, dirs)
	}
	var patchDir string
	for d := range dirs {
		patchDir = d
	}
	for i, n := range cfg.Nodes {
		var host string
		for _, m := range n.ExtraMounts {
			if m.ContainerPath == patchDir {
				host = m.HostPath
			}
		}
		if host == "" {
			t.Errorf("node %d (%s) does not mount %s", i, n.Role, patchDir)
			continue
		}
		// kind resolves relative host paths against its working directory,
		// the repository's root (make kind-up).
		for _, target := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
			path := filepath.Join("..", host, target+"+strategic.yaml")
			var patch struct {
				Metadata struct {
					Annotations map[string]string `json:"annotations"`
				} `json:"metadata"`
			}
			if err := sigsyaml.UnmarshalStrict(readFile(t, path), &patch); err != nil {
				t.Errorf("%s: %v", path, err)
			}
			if patch.Metadata.Annotations[annotation] != "true" {
				t.Errorf("%s does not set %s: \"true\"", path, annotation)
			}
		}
	}
}

// TestKindParserCatchesTypos proves the checks above can fail: each broken
// copy of the config must be rejected.
func TestKindParserCatchesTypos(t *testing.T) {
	good := string(readFile(t, "kind.yaml"))
	for name, edit := range map[string][2]string{
		"misspelt field":     {"containerdConfigPatches:", "containerdConfigPatch:"},
		"misspelt node role": {"role: worker", "role: wroker"},
		"wrong apiVersion":   {"kind.x-k8s.io/v1alpha4", "kind.x-k8s.io/v1alpha3"},
	} {
		bad := strings.Replace(good, edit[0], edit[1], 1)
		if bad == good {
			t.Fatalf("%s: %q not in kind.yaml", name, edit[0])
		}
		cfg, err := parseKind([]byte(bad))
		if err == nil && name == "misspelt node role" {
			// The role is a string type: kind's Validate rejects it, which
			// is internal; check the value the way it does.
			for _, n := range cfg.Nodes {
				if n.Role != v1alpha4.ControlPlaneRole && n.Role != v1alpha4.WorkerRole {
					err = fmt.Errorf("unknown role %q", n.Role)
				}
			}
		}
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for name, patch := range map[string]string{
		"misspelt NRI key": `[plugins."io.containerd.nri.v1.nri"]
  plugin_request_timout = "5s"`,
		"misspelt validator key": `[plugins."io.containerd.nri.v1.nri".default_validator]
  required_plugin = ["x"]`,
		"wrong value type": `[plugins."io.containerd.nri.v1.nri".default_validator]
  required_plugins = "nri-image-verifier"`,
		"not TOML": `[plugins."io.containerd.nri.v1.nri"`,
	} {
		if _, err := checkNRIPatch(patch); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
