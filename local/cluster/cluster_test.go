// Package cluster_test checks the local cluster's scripts where make test
// can run them without starting a cluster: every script parses, up.sh
// --preflight names a missing prerequisite with the Debian package that
// brings it and reports a port in use instead of moving it, and down.sh
// is harmless with no cluster. The cluster itself is make e2e's
// (local/cluster/e2e); the smoke walkthrough is also run against the
// all-in-one by local/allinone's tests.
package cluster_test

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestScriptsParse(t *testing.T) {
	scripts, err := filepath.Glob("*.sh")
	if err != nil || len(scripts) < 7 {
		t.Fatalf("scripts: %v %v", scripts, err)
	}
	for _, s := range scripts {
		if out, err := exec.Command("bash", "-n", s).CombinedOutput(); err != nil {
			t.Errorf("%s: %v\n%s", s, err, out)
		}
	}
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: up.sh checks for root before anything else; run as root")
	}
}

// pathWithout is a PATH directory holding every command of the usual
// directories but those named.
func pathWithout(t *testing.T, drop ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{"/usr/local/go/bin", "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
		entries, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range entries {
			name := e.Name()
			if strings.Contains(strings.Join(drop, " ")+" ", name+" ") {
				continue
			}
			if _, err := os.Lstat(filepath.Join(dir, name)); err == nil {
				continue // an earlier directory has it
			}
			os.Symlink(filepath.Join(d, name), filepath.Join(dir, name))
		}
	}
	return dir
}

// preflight runs up.sh --preflight with env added to a state directory of
// its own.
func preflight(t *testing.T, env ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("bash", "up.sh", "--preflight")
	cmd.Env = append(os.Environ(), "KMEP_CLUSTER_STATE="+t.TempDir())
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestPreflightNamesWhatIsMissing(t *testing.T) {
	needRoot(t)
	for _, tc := range []struct {
		drop []string
		env  []string
		want string
	}{
		{drop: []string{"containerd"}, want: "containerd: install containerd"},
		{drop: []string{"runc"}, want: "runc: install runc"},
		{drop: []string{"conntrack"}, want: "conntrack: install conntrack"},
		{drop: []string{"redis-cli"}, want: "redis-cli: install redis-tools"},
		{env: []string{"CNI_BIN_DIR=/nonexistent"}, want: "install containernetworking-plugins"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			env := append([]string{"PATH=" + pathWithout(t, tc.drop...)}, tc.env...)
			out, err := preflight(t, env...)
			if err == nil {
				t.Fatalf("preflight passed without %v %v:\n%s", tc.drop, tc.env, out)
			}
			if !strings.Contains(out, tc.want) {
				t.Errorf("preflight output lacks %q:\n%s", tc.want, out)
			}
		})
	}
}

func TestPreflightReportsAPortInUse(t *testing.T) {
	needRoot(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	out, err := preflight(t, "KMEP_CLUSTER_PORT="+port)
	if err == nil {
		t.Fatalf("preflight passed with port %s taken:\n%s", port, out)
	}
	want := "port " + port + " (the base URL) is in use"
	if !strings.Contains(out, want) || !strings.Contains(out, "KMEP_CLUSTER_PORT") {
		t.Errorf("preflight output lacks %q and the variable to change:\n%s", want, out)
	}
}

// TestDownWithNoClusterIsHarmless: down.sh with no cluster (a state
// directory of its own, never used) succeeds, twice.
func TestDownWithNoClusterIsHarmless(t *testing.T) {
	needRoot(t)
	state := t.TempDir()
	for i := range 2 {
		cmd := exec.Command("bash", "down.sh")
		cmd.Env = append(os.Environ(), "KMEP_CLUSTER_STATE="+state, "KMEP_CLUSTER_CACHE="+t.TempDir())
		if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "no cluster was started") {
			t.Fatalf("down.sh run %d: %v\n%s", i+1, err, out)
		}
	}
}
