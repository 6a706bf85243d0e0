package containerdtest

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// PIDsNaming lists the processes with an argument under dir: containerd
// (--config), the plugin (--policy) and the shims (-address, the socket
// they report to). dir is unique to a run, so these are that run's alone.
// Shared by the e2e suite and the benchmarks' clean-up.
func PIDsNaming(dir string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		for _, arg := range strings.Split(string(b), "\x00") {
			if strings.HasPrefix(arg, dir+"/") {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}
