package kubetoolstest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDefaultBinaryName(t *testing.T) {
	for pkg, want := range map[string]string{
		"go.etcd.io/etcd/server/v3":            "server",
		"k8s.io/kubernetes/cmd/kube-apiserver": "kube-apiserver",
		"helm.sh/helm/v3/cmd/helm":             "helm",
		"example.com/v2tool":                   "v2tool",
	} {
		if got := defaultBinaryName(pkg); got != want {
			t.Errorf("defaultBinaryName(%q) = %q, want %q", pkg, got, want)
		}
	}
}

// TestLocateKeysOnTheModule: the cache folder changes with the tools
// module's go.mod or go.sum, and honours NIV_CACHE.
func TestLocateKeysOnTheModule(t *testing.T) {
	root := t.TempDir()
	mod := filepath.Join(root, ModuleDir)
	if err := os.MkdirAll(mod, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, data string) {
		if err := os.WriteFile(filepath.Join(mod, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module x\n\nrequire (\n\tk8s.io/kubernetes v1.37.2\n)\n")
	write("go.sum", "a h1:x\n")
	cache := t.TempDir()
	t.Setenv("NIV_CACHE", cache)

	a, err := Locate(root)
	if err != nil {
		t.Fatal(err)
	}
	if a.Version != "v1.37.2" || filepath.Dir(a.Dir) != cache || !strings.HasPrefix(filepath.Base(a.Dir), "kube-v1.37.2-") {
		t.Errorf("Locate = %+v", a)
	}
	write("go.sum", "a h1:y\n")
	b, err := Locate(root)
	if err != nil {
		t.Fatal(err)
	}
	if a.Dir == b.Dir {
		t.Error("a changed go.sum kept the same cache folder")
	}
	if b.complete() {
		t.Error("an empty folder counts as built")
	}
}

// TestRealModuleIsPinned: the repository's tools module names the
// Kubernetes version the main module's client-go belongs to.
func TestRealModuleIsPinned(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	tl, err := Locate(root)
	if err != nil {
		t.Fatal(err)
	}
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	client := requiredVersion(gomod, "k8s.io/client-go")
	// client-go v0.X.Y goes with Kubernetes v1.X.Y.
	if client == "" || strings.TrimPrefix(client, "v0.") != strings.TrimPrefix(tl.Version, "v1.") {
		t.Errorf("tools module builds Kubernetes %s but the main module uses client-go %s", tl.Version, client)
	}
}
