package cluster

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nri-image-verifier/nri-image-verifier/internal/containerdtest"
)

// kubelet changes the host outside its --root-dir, whatever it is given:
// the kernel settings below (setupKernelTunables, at start), a device
// plugin folder at a fixed path, and a symlink per container in
// /var/log/containers. The harness notes the state before kubelet starts
// in files of the run's directory, so that cleanRun can undo it also
// after a run that crashed (the next run's sweep).
var kernelTunables = []string{
	"vm/overcommit_memory",
	"vm/panic_on_oom",
	"kernel/panic",
	"kernel/panic_on_oops",
	"kernel/keys/root_maxkeys",
	"kernel/keys/root_maxbytes",
}

// hostDirs kubelet creates if missing; removed again only if it did.
var hostDirs = []string{
	"/var/lib/kubelet",                // its default root, parent of:
	"/var/lib/kubelet/device-plugins", // pluginapi.DevicePluginPath, not under --root-dir
	"/var/log/containers",             // kubelet.ContainerLogsDir, not configurable
}

const (
	savedTunables = "saved-sysctls" // "name value" lines
	madeHostDirs  = "made-host-dirs"
)

// lockHost takes, for the rest of t, the machine-wide lock of the
// clusters: two kubelets at once would share /var/lib/kubelet/device-plugins
// (the socket of the second replaces the first's) and undo each other's
// host changes at their ends. A second run (another package's go test,
// the demo) waits; the kernel drops the lock of a run that dies.
func lockHost(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile(hostLock, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Logf("another single-node cluster runs on this machine; waiting for it to end (%s)", hostLock)
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
			f.Close()
			t.Fatalf("lock %s: %v", hostLock, err)
		}
	}
	t.Cleanup(func() {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	})
}

const hostLock = "/tmp/niv-cluster.lock"

// expectHostRestored checks, when t ends, after every later-registered
// clean-up (the cluster's teardown among them), that the kernel settings
// kubelet changes and its host folders are as they were now.
func expectHostRestored(t *testing.T) {
	t.Helper()
	before, err := hostState()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		after, err := hostState()
		if err != nil {
			t.Error(err)
			return
		}
		for k, v := range before {
			if after[k] != v {
				t.Errorf("after the cluster: %s is %q, was %q", k, after[k], v)
			}
		}
	})
}

// hostState is what kubelet may leave changed: each kernel setting's
// value, and whether each host folder exists.
func hostState() (map[string]string, error) {
	s := map[string]string{}
	for _, name := range kernelTunables {
		b, err := os.ReadFile(filepath.Join("/proc/sys", name))
		if err != nil {
			return nil, fmt.Errorf("read sysctl %s: %w", name, err)
		}
		s[name] = strings.TrimSpace(string(b))
	}
	for _, d := range hostDirs {
		_, err := os.Stat(d)
		s[d] = fmt.Sprintf("exists: %v", err == nil)
	}
	return s, nil
}

// noteHostState records in dir the kernel settings kubelet will change and
// which of its host folders do not exist yet. Call it before kubelet starts.
func noteHostState(dir string) error {
	var saved, made []string
	for _, name := range kernelTunables {
		b, err := os.ReadFile(filepath.Join("/proc/sys", name))
		if err != nil {
			return fmt.Errorf("read sysctl %s: %w", name, err)
		}
		saved = append(saved, name+" "+strings.TrimSpace(string(b)))
	}
	for _, d := range hostDirs {
		if _, err := os.Stat(d); errors.Is(err, os.ErrNotExist) {
			made = append(made, d)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, savedTunables), []byte(strings.Join(saved, "\n")), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, madeHostDirs), []byte(strings.Join(made, "\n")), 0o644)
}

// cleanRun removes all a run left, whether it ended or died: first what
// containerdtest.CleanDir removes (processes naming dir, among them kubelet,
// the controller-manager and the scheduler; containers, mounts, the
// cgroups under the run's cgroup root, which holds kubelet's kubepods;
// the directory), then kubelet's traces on the host: the kernel settings
// as they were, its symlinks in /var/log/containers, the folders it made.
func cleanRun(dir string) error {
	// Read the notes first: CleanDir removes dir.
	tunables, _ := os.ReadFile(filepath.Join(dir, savedTunables))
	made, _ := os.ReadFile(filepath.Join(dir, madeHostDirs))
	errs := []error{containerdtest.CleanDir(dir)}
	for _, line := range strings.Split(string(tunables), "\n") {
		name, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if err := os.WriteFile(filepath.Join("/proc/sys", name), []byte(value), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("restore sysctl %s=%s: %w", name, value, err))
		}
	}
	links, _ := filepath.Glob("/var/log/containers/*.log")
	for _, l := range links {
		if target, err := os.Readlink(l); err == nil && strings.HasPrefix(target, dir+"/") {
			if err := os.Remove(l); err != nil {
				errs = append(errs, err)
			}
		}
	}
	dirs := strings.Fields(string(made))
	for i := len(dirs) - 1; i >= 0; i-- {
		if dirs[i] == "/var/log/containers" {
			// Another program may have put logs there meanwhile.
			_ = unix.Rmdir(dirs[i])
			continue
		}
		if err := os.RemoveAll(dirs[i]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// makeCgroupRoot creates the run's cgroup, name, in every hierarchy, as
// kubelet's --cgroup-root (KubeletConfiguration cgroupRoot), which must
// exist: kubelet puts its kubepods tree, and so every pod, under it, and
// containerdtest.CleanDir removes it by that name. cgroup v1 cpusets start
// empty and take no task; they get their parent's CPUs and memory nodes.
func makeCgroupRoot(name string) error {
	tops, err := os.ReadDir("/sys/fs/cgroup")
	if err != nil {
		return fmt.Errorf("cgroup root: %w", err)
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		tops = nil // cgroup v2: one hierarchy
		if err := os.Mkdir(filepath.Join("/sys/fs/cgroup", name), 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("cgroup root: %w", err)
		}
	}
	for _, top := range tops {
		parent := filepath.Join("/sys/fs/cgroup", top.Name())
		if _, err := os.Stat(filepath.Join(parent, "cgroup.procs")); err != nil {
			continue // not a mounted hierarchy
		}
		d := filepath.Join(parent, name)
		if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("cgroup root: %w", err)
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if b, err := os.ReadFile(filepath.Join(parent, f)); err == nil {
				if err := os.WriteFile(filepath.Join(d, f), b, 0o644); err != nil {
					return fmt.Errorf("cgroup root %s: %w", f, err)
				}
			}
		}
	}
	return nil
}

// hostIPv4 is the first global IPv4 address of an interface that is up:
// kubelet's --node-ip (it refuses loopback), where the API server and
// kubelet's probes find the hostNetwork pods.
func hostIPv4() (string, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return "", err
	}
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
				return n.IP.String(), nil
			}
		}
	}
	return "", errors.New("no interface with a global IPv4 address for kubelet's --node-ip")
}
