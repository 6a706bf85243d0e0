// Package daemonset holds the Helm chart (chart/) and the plain manifests
// rendered from it (manifests/). Its test renders the chart with a real
// helm, built from the Go module proxy (internal/kubetoolstest), and checks the
// result object by object.
package daemonset

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/nri-image-verifier/nri-image-verifier/internal/daemontest"
	"github.com/nri-image-verifier/nri-image-verifier/internal/kubetoolstest"
	"github.com/nri-image-verifier/nri-image-verifier/policy"
	"github.com/nri-image-verifier/nri-image-verifier/verify/validators"
)

var update = flag.Bool("update", false, "rewrite manifests/ from the chart (make manifests)")

const (
	release   = "nri-image-verifier"
	namespace = "kube-system"
	// Manifests is the chart rendered with its default values.
	Manifests = "manifests/nri-image-verifier.yaml"
)

var (
	toolsOnce sync.Once
	tools     kubetoolstest.Tools
	toolsErr  error
)

// helm renders the chart with args (values files, --set) and returns
// helm's output, or its error and stderr.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	toolsOnce.Do(func() {
		root, err := kubetoolstest.RepoRoot()
		if err != nil {
			toolsErr = err
			return
		}
		tools, toolsErr = kubetoolstest.Ensure(context.Background(), root, os.Stderr)
	})
	if toolsErr != nil {
		t.Fatalf("helm is needed to render the chart and could not be built: %v", toolsErr)
	}
	cmd := exec.Command(tools.Helm, args...)
	// A helm of its own: no user's repositories, plugins or caches.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_DATA_HOME="+home)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

func render(t *testing.T, extra ...string) string {
	t.Helper()
	out, err := helm(t, append([]string{"template", release, "chart", "--namespace", namespace}, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// objects decodes rendered YAML strictly: a misspelt field in a template
// is an error here, not a field the API server silently drops.
func objects(t *testing.T, rendered string) []runtime.Object {
	t.Helper()
	dec := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	var objs []runtime.Object
	for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(rendered, -1) {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		obj, _, err := dec.Decode([]byte(doc), nil, nil)
		if err != nil {
			t.Fatalf("rendered object does not decode: %v\n%s", err, doc)
		}
		objs = append(objs, obj)
	}
	return objs
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func find[T runtime.Object](objs []runtime.Object) []T {
	var out []T
	for _, o := range objs {
		if v, ok := o.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

func one[T runtime.Object](t *testing.T, objs []runtime.Object) T {
	t.Helper()
	found := find[T](objs)
	if len(found) != 1 {
		var zero T
		t.Fatalf("want one %T, rendered %d", zero, len(found))
	}
	return found[0]
}

// TestManifestsUpToDate: manifests/ is exactly what the chart renders.
func TestManifestsUpToDate(t *testing.T) {
	got := render(t)
	if *update {
		if err := os.WriteFile(Manifests, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(Manifests)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		gl, wl := strings.Split(got, "\n"), strings.Split(string(want), "\n")
		for i := range min(len(gl), len(wl)) {
			if gl[i] != wl[i] {
				t.Fatalf("%s is not what the chart renders (run `make manifests`); first difference, line %d:\nchart: %s\nfile:  %s",
					Manifests, i+1, gl[i], wl[i])
			}
		}
		t.Fatalf("%s is not what the chart renders (run `make manifests`): %d lines vs %d", Manifests, len(gl), len(wl))
	}
}

func TestLint(t *testing.T) {
	for _, values := range [][]string{nil, {"-f", "../kind-config/values-kind.yaml"}} {
		if out, err := helm(t, append([]string{"lint", "--strict", "chart"}, values...)...); err != nil {
			t.Errorf("helm lint %v: %v\n%s", values, err, out)
		}
	}
}

// TestSchemaRejectsBadValues: values.schema.json turns typos and bad types
// into install errors.
func TestSchemaRejectsBadValues(t *testing.T) {
	for _, set := range []string{
		"nri.decisionTimeout=soon",
		"nri.pluginIndex=7",
		"http.port=0",
		"image.pullPolicy=Sometimes",
		"evnts.enabled=false",            // unknown top-level key
		"containerdFallback.enable=true", // unknown nested key
		"criStateDir=run/containerd",     // image volumes would never match
		"policy.mode=strict",
		"admissionPolicy.exemptNamespaces[0]=Not_A_Namespace",
		"extraEnv[0].value=x",   // an EnvVar without a name
		"extraEnv[0].name=1BAD", // not an environment variable name
		"registryLimits.bodyBudget=lots",
		"registryLimits.maxSignatureBytes=256KB",
		"registryLimits.maxDescriptors=-1",
	} {
		_, err := helm(t, "template", release, "chart", "--namespace", namespace, "--set", set)
		if err == nil || !strings.Contains(err.Error(), "schema") {
			t.Errorf("--set %s: want a schema error, got %v", set, err)
		}
	}
}

// TestRBACIsMinimal: the plugin's identity may create and patch Events and
// nothing else; the tests in integration/kube prove it against a real API
// server.
func TestRBACIsMinimal(t *testing.T) {
	objs := objects(t, render(t))
	if roles := find[*rbacv1.Role](objs); len(roles) != 0 {
		t.Errorf("namespaced Roles rendered: %d", len(roles))
	}
	cr := one[*rbacv1.ClusterRole](t, objs)
	want := []rbacv1.PolicyRule{{APIGroups: []string{"events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}}}
	if fmt.Sprint(cr.Rules) != fmt.Sprint(want) || cr.AggregationRule != nil {
		t.Errorf("ClusterRole rules %+v, want exactly %+v", cr.Rules, want)
	}
	crb := one[*rbacv1.ClusterRoleBinding](t, objs)
	sa := one[*corev1.ServiceAccount](t, objs)
	if crb.RoleRef.Name != cr.Name || len(crb.Subjects) != 1 || crb.Subjects[0].Kind != "ServiceAccount" ||
		crb.Subjects[0].Name != sa.Name || crb.Subjects[0].Namespace != namespace {
		t.Errorf("binding %+v does not bind %s to exactly the ServiceAccount %s/%s", crb, cr.Name, namespace, sa.Name)
	}
	ds := one[*appsv1.DaemonSet](t, objs)
	if ds.Spec.Template.Spec.ServiceAccountName != sa.Name {
		t.Errorf("DaemonSet runs as %q, not the chart's ServiceAccount %q", ds.Spec.Template.Spec.ServiceAccountName, sa.Name)
	}

	// Without Events the plugin needs no API access at all.
	objs = objects(t, render(t, "--set", "events.enabled=false"))
	if n := len(find[*rbacv1.ClusterRole](objs)) + len(find[*rbacv1.ClusterRoleBinding](objs)); n != 0 {
		t.Errorf("events off still renders %d RBAC objects", n)
	}
	sa = one[*corev1.ServiceAccount](t, objs)
	ds = one[*appsv1.DaemonSet](t, objs)
	if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken ||
		ds.Spec.Template.Spec.AutomountServiceAccountToken == nil || *ds.Spec.Template.Spec.AutomountServiceAccountToken {
		t.Error("events off still mounts a service account token")
	}
	if !slices.Contains(ds.Spec.Template.Spec.Containers[0].Args, "--events=false") {
		t.Errorf("events off: args %q", ds.Spec.Template.Spec.Containers[0].Args)
	}
}

// TestDaemonSet checks the pod the chart runs on every node, with the
// default values and with the containerd fallback on.
func TestDaemonSet(t *testing.T) {
	for _, tc := range []struct {
		name     string
		args     []string
		fallback bool
	}{
		{name: "defaults"},
		{name: "fallback", args: []string{"--set", "containerdFallback.enabled=true"}, fallback: true},
		{name: "kind", args: []string{"-f", "../kind-config/values-kind.yaml"}, fallback: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := objects(t, render(t, tc.args...))
			ds := one[*appsv1.DaemonSet](t, objs)
			checkPod(t, ds.Spec.Template, tc.fallback)
			checkFlags(t, ds.Spec.Template.Spec.Containers[0].Args)
			cm := one[*corev1.ConfigMap](t, objs)
			if _, err := policy.ParseWith([]byte(cm.Data["policy.yaml"]), validators.Check); err != nil {
				t.Errorf("the rendered policy does not load:\n%v\n%s", err, cm.Data["policy.yaml"])
			}
			if !hasConfigMapVolume(ds.Spec.Template.Spec.Volumes, cm.Name) {
				t.Errorf("the DaemonSet does not mount ConfigMap %s", cm.Name)
			}
		})
	}
}

// TestRegistryLimitValues: the registry limits reach the plugin's flags
// when set, and are left to the plugin's defaults when not.
func TestRegistryLimitValues(t *testing.T) {
	limits := []string{"--registry-max-manifest-bytes=2Mi", "--registry-max-signature-bytes=128Ki",
		"--registry-max-blob-bytes=16Mi", "--registry-body-budget=96Mi", "--registry-max-descriptors=64"}
	for name, args := range map[string][]string{
		"unset": nil,
		"set": {"--set", "registryLimits.maxManifestBytes=2Mi,registryLimits.maxSignatureBytes=128Ki,registryLimits.maxBlobBytes=16Mi," +
			"registryLimits.bodyBudget=96Mi,registryLimits.maxDescriptors=64"},
	} {
		ds := one[*appsv1.DaemonSet](t, objects(t, render(t, args...)))
		got := ds.Spec.Template.Spec.Containers[0].Args
		checkFlags(t, got)
		for _, want := range limits {
			if has := slices.Contains(got, want); has != (name == "set") {
				t.Errorf("%s: %s in args is %v: %q", name, want, has, got)
			}
		}
	}
}

func hasConfigMapVolume(vols []corev1.Volume, name string) bool {
	for _, v := range vols {
		if v.ConfigMap != nil && v.ConfigMap.Name == name {
			return true
		}
	}
	return false
}

func checkPod(t *testing.T, tpl corev1.PodTemplateSpec, fallback bool) {
	t.Helper()
	spec := tpl.Spec
	if spec.PriorityClassName != "system-node-critical" {
		t.Errorf("priorityClassName %q", spec.PriorityClassName)
	}
	if !slices.ContainsFunc(spec.Tolerations, func(tol corev1.Toleration) bool {
		return tol.Key == "" && tol.Operator == corev1.TolerationOpExists && tol.Effect == ""
	}) {
		t.Errorf("no toleration for every taint: %+v", spec.Tolerations)
	}
	if tpl.Annotations["tolerate-missing-nri-plugins.noderesource.dev"] != "true" {
		t.Errorf("the plugin's pod lacks the tolerate annotation: %v", tpl.Annotations)
	}
	if spec.HostPID || spec.HostIPC {
		t.Error("host PID or IPC namespace")
	}
	psc := spec.SecurityContext
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod seccomp %+v", psc)
	}
	if len(spec.Containers) != 1 || len(spec.InitContainers) != 0 {
		t.Fatalf("%d containers, %d init containers", len(spec.Containers), len(spec.InitContainers))
	}
	c := spec.Containers[0]
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Fatal("no container securityContext")
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Error("root filesystem is writable")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Error("privilege escalation allowed")
	case sc.Privileged != nil && *sc.Privileged:
		t.Error("privileged")
	case sc.Capabilities == nil || fmt.Sprint(sc.Capabilities.Drop) != "[ALL]" || len(sc.Capabilities.Add) != 0:
		t.Errorf("capabilities %+v, want all dropped and none added", sc.Capabilities)
	case sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Error("container seccomp is not RuntimeDefault")
	}

	// hostPath: only the NRI socket's folder, and containerd's socket only
	// with the fallback; both read-only.
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m
	}
	var hostPaths []string
	for _, v := range spec.Volumes {
		if v.HostPath == nil {
			continue
		}
		hostPaths = append(hostPaths, v.HostPath.Path)
		if m, ok := mounts[v.Name]; !ok || !m.ReadOnly {
			t.Errorf("hostPath %s is not mounted read-only", v.HostPath.Path)
		}
		switch v.HostPath.Path {
		case "/var/run/nri":
			if *v.HostPath.Type != corev1.HostPathDirectory {
				t.Errorf("NRI folder hostPath type %s: a missing folder must fail, not be created", *v.HostPath.Type)
			}
		case "/run/containerd/containerd.sock":
			if *v.HostPath.Type != corev1.HostPathSocket {
				t.Errorf("containerd socket hostPath type %s", *v.HostPath.Type)
			}
		}
	}
	want := []string{"/var/run/nri"}
	if fallback {
		want = append(want, "/run/containerd/containerd.sock")
	}
	if fmt.Sprint(hostPaths) != fmt.Sprint(want) {
		t.Errorf("hostPath volumes %q, want %q", hostPaths, want)
	}
	socketArg := "--containerd-socket="
	if fallback {
		socketArg += "/run/containerd/containerd.sock"
	}
	if !slices.Contains(c.Args, socketArg) {
		t.Errorf("args %q lack %q", c.Args, socketArg)
	}
	// Image volumes are found under containerd's CRI state dir.
	if stateArg := "--cri-state-dir=/run/containerd/io.containerd.grpc.v1.cri"; !slices.Contains(c.Args, stateArg) {
		t.Errorf("args %q lack %q", c.Args, stateArg)
	}

	// Probes on the HTTP port the daemon is told to serve.
	if len(c.Ports) != 1 || c.Ports[0].Name != "http" {
		t.Fatalf("ports %+v", c.Ports)
	}
	if !slices.Contains(c.Args, fmt.Sprintf("--http-addr=:%d", c.Ports[0].ContainerPort)) {
		t.Errorf("args %q do not serve HTTP on port %d", c.Args, c.Ports[0].ContainerPort)
	}
	for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe} {
		wantPath := "/healthz"
		if name == "readiness" {
			wantPath = "/readyz"
		}
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != wantPath || p.HTTPGet.Port.String() != "http" {
			t.Errorf("%s probe %+v, want GET %s on port http", name, p, wantPath)
		}
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v: want cpu and memory requests and a memory limit", c.Resources)
	}
	var nodeName bool
	for _, e := range c.Env {
		if e.Name == "NODE_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName" {
			nodeName = true
		}
	}
	if !nodeName {
		t.Errorf("NODE_NAME does not come from spec.nodeName: %+v", c.Env)
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	daemontest.Cleanup() // the binary checkFlags built
	os.Exit(code)
}

var (
	flagsOnce sync.Once
	runFlags  map[string]bool
	flagsErr  error
)

// checkFlags runs the real binary's `run -h` and checks that every flag the
// chart passes exists, so a renamed flag fails here and not on a node.
func checkFlags(t *testing.T, args []string) {
	t.Helper()
	flagsOnce.Do(func() {
		bin, err := daemontest.Build(daemontest.DaemonPkg, daemontest.Plain)
		if err != nil {
			flagsErr = err
			return
		}
		out, _ := exec.Command(bin, "run", "-h").CombinedOutput()
		runFlags = map[string]bool{}
		for _, m := range regexp.MustCompile(`(?m)^\s+-([a-z0-9-]+)`).FindAllStringSubmatch(string(out), -1) {
			runFlags[m[1]] = true
		}
		if len(runFlags) < 5 {
			flagsErr = fmt.Errorf("could not read the flags of `run -h`:\n%s", out)
		}
	})
	if flagsErr != nil {
		t.Fatal(flagsErr)
	}
	if len(args) == 0 || args[0] != "run" {
		t.Fatalf("args %q do not start with the run command", args)
	}
	for _, a := range args[1:] {
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "--") || !runFlags[name] {
			t.Errorf("the chart passes %q, which `nri-image-verifier run` does not take", a)
		}
	}
}
