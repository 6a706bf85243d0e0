package containerdtest

// Cleaning up after containerd, shared by the e2e suite, the benchmarks and
// the single-node cluster (integration/cluster): a run keeps everything in
// one directory under /tmp, and what containerd puts outside it (shims,
// mounts, cgroups, legacy shim sockets) is found from that directory.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Sweep cleans up after earlier runs that died without doing it (a test
// timeout panics past every t.Cleanup; SIGKILL): each directory matching
// pattern whose owner (the PID in its file "owner") is gone is given to
// clean. A directory without an owner yet may be a run starting now.
func Sweep(t testing.TB, pattern string, clean func(dir string) error) {
	t.Helper()
	dirs, _ := filepath.Glob(pattern)
	for _, d := range dirs {
		owner, _ := os.ReadFile(filepath.Join(d, "owner"))
		pid, err := strconv.Atoi(strings.TrimSpace(string(owner)))
		if err == nil && syscall.Kill(pid, 0) == nil {
			continue // a live run
		}
		if fi, err := os.Stat(d); err != nil || (pid == 0 && time.Since(fi.ModTime()) < time.Minute) {
			continue
		}
		t.Logf("cleaning up after an earlier run that did not: %s", d)
		if err := clean(d); err != nil {
			t.Errorf("cleaning up %s: %v", d, err)
		}
	}
}

// TearDownOnSignal: Ctrl-C or a CI cancel end the test binary before any
// t.Cleanup runs, so on SIGINT or SIGTERM clean dir here, then exit.
func TearDownOnSignal(t testing.TB, dir string, clean func(dir string) error) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-sig:
			fmt.Fprintf(os.Stderr, "%v: removing the processes, mounts and cgroups of %s, and it\n", s, dir)
			if err := clean(dir); err != nil {
				fmt.Fprintln(os.Stderr, err)
			}
			os.Exit(1)
		case <-done:
		}
	}()
	t.Cleanup(func() {
		signal.Stop(sig)
		close(done)
	})
}

// Shims daemonise: containerd starts them, they detach and are re-parented
// to the nearest subreaper, by default PID 1. Making the test process the
// subreaper lets teardown reap the ones that exited; PID 1 may not (this
// VM's does not), which leaves a <defunct> entry per shim.
var subreaperOnce sync.Once

func BecomeSubreaper() error {
	var err error
	subreaperOnce.Do(func() { err = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) })
	if err != nil {
		return fmt.Errorf("PR_SET_CHILD_SUBREAPER: %w", err)
	}
	return nil
}

// reapOrphans waits for our exited children that nothing else waits for:
// shims adopted as subreaper. Call it only once every exec.Cmd is waited.
func reapOrphans() {
	self := strconv.Itoa(os.Getpid())
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// "pid (comm) state ppid ...": comm may hold spaces; cut after ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) >= 2 && f[0] == "Z" && f[1] == self {
			var ws syscall.WaitStatus
			syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
		}
	}
}

// mountsUnder lists mount points under dir, deepest first.
func mountsUnder(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("mountinfo: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			out = append(out, fields[4])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(out)))
	return out, sc.Err()
}

// unmountAll unmounts what containerd left under dir (rootfs overlays,
// sandbox shm), lazily if a mount is still busy.
func unmountAll(dir string) error {
	mounts, err := mountsUnder(dir)
	if err != nil {
		return err
	}
	var errs []string
	for _, m := range mounts {
		if err := unix.Unmount(m, 0); err != nil {
			if err := unix.Unmount(m, unix.MNT_DETACH); err != nil {
				errs = append(errs, fmt.Sprintf("%s: %v", m, err))
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("unmount: %s", strings.Join(errs, "; "))
	}
	return nil
}

// RemoveCgroups removes the pods' cgroup parent, name, from every
// hierarchy (cgroup v1 has one per controller, v2 one): a cgroup is
// removed with rmdir, children first, once its processes are gone.
func RemoveCgroups(name string) error {
	tops, _ := filepath.Glob("/sys/fs/cgroup/" + name)
	more, _ := filepath.Glob("/sys/fs/cgroup/*/" + name)
	var errs []string
	for _, top := range append(tops, more...) {
		var dirs []string
		filepath.WalkDir(top, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := unix.Rmdir(dirs[i]); err != nil && err != unix.ENOENT {
				errs = append(errs, fmt.Sprintf("%s: %v", dirs[i], err))
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("remove cgroups: %s", strings.Join(errs, "; "))
	}
	return nil
}

// CleanDir removes all a world left in dir, whether its run ended or died:
// processes, containers, mounts, cgroups, the directory. Containers first
// go through runc, which kills their processes: containerd does not stop
// them when it exits, and a killed shim leaves them running.
func CleanDir(dir string) error {
	var errs []error
	var outside []string // sockets the killed listen on outside dir
	for _, pid := range PIDsNaming(dir) {
		outside = append(outside, shimSockets(pid)...)
		syscall.Kill(pid, syscall.SIGCONT) // a test may have stopped it
		syscall.Kill(pid, syscall.SIGKILL)
	}
	runcRoot := filepath.Join(dir, "runc", "k8s.io")
	if out, err := exec.Command("runc", "--root", runcRoot, "list", "-q").Output(); err == nil {
		for _, id := range strings.Fields(string(out)) {
			if out, err := exec.Command("runc", "--root", runcRoot, "delete", "--force", id).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("runc delete %s: %v: %s", id, err, out))
			}
		}
	}
	time.Sleep(100 * time.Millisecond) // for the killed to become zombies
	reapOrphans()
	if err := unmountAll(dir); err != nil {
		errs = append(errs, err)
	}
	if err := RemoveCgroups(filepath.Base(dir)); err != nil {
		errs = append(errs, err)
	}
	// A killed shim leaves its socket; a stopped one removes it itself.
	for _, sock := range outside {
		if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	removeMadeDirs(dir)
	if err := os.RemoveAll(dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// containerd < 2.3 ignores the shim manager's socket_dir and puts shim
// sockets in /run/containerd/s, creating /run/containerd if need be,
// whatever its configured state directory. The socket names are hashes of
// the run's own containerd socket path and the shim's ID, so they never
// clash with another containerd's; but they and those directories are
// outside the run's directory, and cleaning up must find them.
const legacyShimSocketDir = "/run/containerd/s"

// NoteMadeDirs records in dir which of containerd's system directories do
// not exist yet, for removeMadeDirs to remove once the run is over (if
// they are empty then), also after a crash. Call it before containerd's
// first start.
func NoteMadeDirs(dir string) error {
	var made []string
	for _, d := range []string{filepath.Dir(legacyShimSocketDir), legacyShimSocketDir} {
		if _, err := os.Stat(d); errors.Is(err, os.ErrNotExist) {
			made = append(made, d)
		}
	}
	return os.WriteFile(filepath.Join(dir, "made-dirs"), []byte(strings.Join(made, "\n")), 0o644)
}

// removeMadeDirs removes the directories NoteMadeDirs noted, deepest
// first, if they are empty: another containerd may have come to use them.
func removeMadeDirs(dir string) {
	b, _ := os.ReadFile(filepath.Join(dir, "made-dirs"))
	made := strings.Fields(string(b))
	for i := len(made) - 1; i >= 0; i-- {
		unix.Rmdir(made[i])
	}
}

// shimSockets lists the unix sockets process pid listens on in
// legacyShimSocketDir: /proc/net/unix names each socket by inode, and
// /proc/<pid>/fd links to the inodes the process holds.
func shimSockets(pid int) []string {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return nil
	}
	held := map[string]bool{}
	for _, fd := range fds {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if inode, ok := strings.CutPrefix(link, "socket:["); err == nil && ok {
			held[strings.TrimSuffix(inode, "]")] = true
		}
	}
	// "Num RefCount Protocol Flags Type St Inode Path"
	var out []string
	b, _ := os.ReadFile("/proc/net/unix")
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 8 && held[f[6]] && strings.HasPrefix(f[7], legacyShimSocketDir+"/") {
			out = append(out, f[7])
		}
	}
	return out
}
