// Package kubetoolstest builds, once, the Kubernetes binaries the tests run:
// kube-apiserver, etcd and helm, and for the single-node cluster
// (integration/cluster, `make cluster-demo`) kubelet,
// kube-controller-manager, kube-scheduler and kubectl. They come from the
// Go module proxy through the nested module tools/kube, whose go.mod pins
// them and keeps their dependencies out of the main module. The binaries
// are cached outside the clone (CI clones afresh every run), in a folder
// named after a hash of that module's go.mod and go.sum, so changing a
// pinned version rebuilds.
package kubetoolstest

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// ModuleDir is the tools module, relative to the repository root.
const ModuleDir = "tools/kube"

// The packages built, and the file name each gets.
var builds = []struct{ pkg, name string }{
	{"k8s.io/kubernetes/cmd/kube-apiserver", "kube-apiserver"},
	{"go.etcd.io/etcd/server/v3", "etcd"},
	{"helm.sh/helm/v3/cmd/helm", "helm"},
	{"k8s.io/kubernetes/cmd/kubelet", "kubelet"},
	{"k8s.io/kubernetes/cmd/kube-controller-manager", "kube-controller-manager"},
	{"k8s.io/kubernetes/cmd/kube-scheduler", "kube-scheduler"},
	{"k8s.io/kubernetes/cmd/kubectl", "kubectl"},
}

// Tools are the paths of the cached binaries.
type Tools struct {
	Dir       string
	APIServer string
	Etcd      string
	Helm      string
	// The rest of a cluster, same Kubernetes version as APIServer.
	Kubelet           string
	ControllerManager string
	Scheduler         string
	Kubectl           string
	// Version is the k8s.io/kubernetes version the API server is built from.
	Version string
	helm    string
}

// CacheRoot is where built tools are kept: $NIV_CACHE, else
// $XDG_CACHE_HOME/nri-image-verifier, else ~/.cache/nri-image-verifier.
func CacheRoot() (string, error) {
	if d := os.Getenv("NIV_CACHE"); d != "" {
		return d, nil
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "nri-image-verifier"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no cache folder: set NIV_CACHE: %w", err)
	}
	return filepath.Join(home, ".cache", "nri-image-verifier"), nil
}

// RepoRoot finds the repository root from the working directory (tests run
// in their package's folder): the first parent holding tools/kube/go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, ModuleDir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no %s/go.mod above the working directory", ModuleDir)
		}
		dir = parent
	}
}

// Locate says where the tools for the module at root are cached, without
// building them.
func Locate(root string) (Tools, error) {
	mod := filepath.Join(root, ModuleDir)
	gomod, err := os.ReadFile(filepath.Join(mod, "go.mod"))
	if err != nil {
		return Tools{}, err
	}
	gosum, err := os.ReadFile(filepath.Join(mod, "go.sum"))
	if err != nil {
		return Tools{}, err
	}
	version := requiredVersion(gomod, "k8s.io/kubernetes")
	if version == "" {
		return Tools{}, fmt.Errorf("%s/go.mod does not require k8s.io/kubernetes", ModuleDir)
	}
	helmVersion := requiredVersion(gomod, "helm.sh/helm/v3")
	h := sha256.New()
	h.Write(gomod)
	h.Write([]byte{0})
	h.Write(gosum)
	h.Write([]byte{0})
	// How the binaries are built is part of what is cached.
	h.Write([]byte(ldflags(version, helmVersion)))
	cache, err := CacheRoot()
	if err != nil {
		return Tools{}, err
	}
	dir := filepath.Join(cache, "kube-"+version+"-"+hex.EncodeToString(h.Sum(nil))[:12])
	return Tools{
		Dir:               dir,
		APIServer:         filepath.Join(dir, "kube-apiserver"),
		Etcd:              filepath.Join(dir, "etcd"),
		Helm:              filepath.Join(dir, "helm"),
		Kubelet:           filepath.Join(dir, "kubelet"),
		ControllerManager: filepath.Join(dir, "kube-controller-manager"),
		Scheduler:         filepath.Join(dir, "kube-scheduler"),
		Kubectl:           filepath.Join(dir, "kubectl"),
		Version:           version,
		helm:              helmVersion,
	}, nil
}

// Ensure returns the cached tools, building them first on a cache miss.
// Concurrent callers (go test runs packages in parallel processes) wait
// for one build on a file lock. Build output goes to log.
func Ensure(ctx context.Context, root string, log io.Writer) (Tools, error) {
	t, err := Locate(root)
	if err != nil {
		return Tools{}, err
	}
	if t.complete() {
		return t, nil
	}
	if err := os.MkdirAll(filepath.Dir(t.Dir), 0o755); err != nil {
		return Tools{}, err
	}
	unlock, err := lock(filepath.Join(filepath.Dir(t.Dir), "kube.lock"))
	if err != nil {
		return Tools{}, err
	}
	defer unlock()
	if t.complete() { // built by whoever held the lock before us
		return t, nil
	}
	if err := build(ctx, root, t, log); err != nil {
		return Tools{}, err
	}
	return t, nil
}

func (t Tools) complete() bool {
	for _, b := range builds {
		p := filepath.Join(t.Dir, b.name)
		if fi, err := os.Stat(p); err != nil || fi.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// build compiles every tool into a temporary folder and renames it into
// place, so a build killed halfway leaves no folder that looks complete.
func build(ctx context.Context, root string, t Tools, log io.Writer) error {
	tmp, err := os.MkdirTemp(filepath.Dir(t.Dir), filepath.Base(t.Dir)+".tmp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}

	start := time.Now()
	fmt.Fprintf(log, "kubetoolstest: building Kubernetes %s (kube-apiserver, kubelet, kube-controller-manager, kube-scheduler, kubectl), etcd and helm into %s (a cold build takes 10-15 minutes and up to 3 GB of memory)\n",
		t.Version, t.Dir)
	args := []string{"build", "-trimpath", "-ldflags", ldflags(t.Version, t.helm), "-o", tmp + string(filepath.Separator)}
	for _, b := range builds {
		args = append(args, b.pkg)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = filepath.Join(root, ModuleDir)
	// The tools module stands alone: no workspace, and its go.sum is
	// complete, so nothing is added to it behind our back.
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly -buildvcs=false")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("building the Kubernetes test tools in %s: %w", cmd.Dir, err)
	}
	for _, b := range builds {
		// go build names a /vN package's binary after the element before it.
		got := filepath.Join(tmp, defaultBinaryName(b.pkg))
		if err := os.Rename(got, filepath.Join(tmp, b.name)); err != nil {
			return fmt.Errorf("kubetoolstest: %w", err)
		}
	}
	if err := os.RemoveAll(t.Dir); err != nil {
		return err
	}
	if err := os.Rename(tmp, t.Dir); err != nil {
		return fmt.Errorf("kubetoolstest: %w", err)
	}
	fmt.Fprintf(log, "kubetoolstest: built in %s\n", time.Since(start).Round(time.Second))
	return nil
}

// ldflags stamps versions that the upstream builds set at link time and
// that a plain `go build` leaves at placeholders: the API server would say
// v0.0.0-master, and helm would render for Kubernetes v1.20, which a
// chart's kubeVersion constraint rejects.
func ldflags(kube, helm string) string {
	f := "-X k8s.io/component-base/version.gitVersion=" + kube
	parts := strings.SplitN(strings.TrimPrefix(kube, "v"), ".", 3)
	if len(parts) == 3 {
		f += " -X k8s.io/component-base/version.gitMajor=" + parts[0] +
			" -X k8s.io/component-base/version.gitMinor=" + parts[1]
		for _, pkg := range []string{"helm.sh/helm/v3/pkg/chartutil", "helm.sh/helm/v3/pkg/lint/rules"} {
			f += " -X " + pkg + ".k8sVersionMajor=" + parts[0] + " -X " + pkg + ".k8sVersionMinor=" + parts[1]
		}
	}
	if helm != "" {
		f += " -X helm.sh/helm/v3/internal/version.version=" + helm
	}
	return f
}

// defaultBinaryName is the file go build -o DIR/ writes for pkg.
func defaultBinaryName(pkg string) string {
	elems := strings.Split(pkg, "/")
	last := elems[len(elems)-1]
	if len(elems) > 1 && len(last) > 1 && last[0] == 'v' && strings.Trim(last[1:], "0123456789") == "" {
		return elems[len(elems)-2]
	}
	return last
}

// requiredVersion finds the version of module in a go.mod's require lines.
func requiredVersion(gomod []byte, module string) string {
	sc := bufio.NewScanner(strings.NewReader(string(gomod)))
	for sc.Scan() {
		f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "require"))
		if len(f) >= 2 && f[0] == module {
			return f[1]
		}
	}
	return ""
}

// lock takes an exclusive lock on path, waiting for it.
func lock(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
