package policytest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// ConfigMapDir lays out a directory the way kubelet mounts a ConfigMap:
// policy.yaml -> ..data/policy.yaml, ..data -> ..<timestamp>/.
type ConfigMapDir struct {
	t   *testing.T
	dir string
	n   int
	old string
}

// NewConfigMapDir publishes content as the first version of policy.yaml.
func NewConfigMapDir(t *testing.T, content string) *ConfigMapDir {
	c := &ConfigMapDir{t: t, dir: t.TempDir()}
	c.Swap(content)
	if err := os.Symlink(filepath.Join("..data", "policy.yaml"), c.Path()); err != nil {
		t.Fatal(err)
	}
	return c
}

// Path is the policy file as the pod sees it.
func (c *ConfigMapDir) Path() string { return filepath.Join(c.dir, "policy.yaml") }

// Swap publishes new content as kubelet does: a new timestamped directory,
// an atomic rename of a fresh "..data" symlink over the old one, then the
// old directory removed.
func (c *ConfigMapDir) Swap(content string) {
	c.t.Helper()
	c.n++
	ts := fmt.Sprintf("..2026_01_01_00_00_%02d.%09d", c.n, c.n)
	if err := os.Mkdir(filepath.Join(c.dir, ts), 0o700); err != nil {
		c.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.dir, ts, "policy.yaml"), []byte(content), 0o600); err != nil {
		c.t.Fatal(err)
	}
	tmp := filepath.Join(c.dir, "..data_tmp")
	if err := os.Symlink(ts, tmp); err != nil {
		c.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(c.dir, "..data")); err != nil {
		c.t.Fatal(err)
	}
	if c.old != "" {
		if err := os.RemoveAll(filepath.Join(c.dir, c.old)); err != nil {
			c.t.Fatal(err)
		}
	}
	c.old = ts
}
