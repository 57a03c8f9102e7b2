package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// CoreDNSVersion is the CoreDNS release the DNS tests and benchmarks
// compare against (the resolver KubeEdge EdgeMesh embeds).
const CoreDNSVersion = "v1.15.0"

var coreDNSBuild struct {
	once sync.Once
	path string
	err  error
}

// CoreDNSBinary returns the path of a coredns binary: the one make
// testbins built (or `coredns` on PATH), else it builds it the same way
// into BinDir the first time (about 100 s on two cores).
func CoreDNSBinary() (string, error) {
	b := &coreDNSBuild
	b.once.Do(func() {
		if p, err := Binary("coredns"); err == nil {
			b.path = p
			return
		}
		dir := BinDir()
		b.path = filepath.Join(dir, "coredns")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.err = fmt.Errorf("coredns: %w", err)
			return
		}
		cmd := exec.Command("go", "install", "github.com/coredns/coredns@"+CoreDNSVersion)
		cmd.Dir = os.TempDir() // outside any module: install resolves the version itself
		cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("coredns: go install github.com/coredns/coredns@%s: %w\n%s", CoreDNSVersion, err, coreDNSTail(out))
		}
	})
	return b.path, b.err
}

func coreDNSTail(b []byte) string {
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// CoreDNSOptions configure StartCoreDNS.
type CoreDNSOptions struct {
	// Hosts are hosts-file lines ("10.1.2.3 svc.example.test") served by the
	// hosts plugin for every zone; names it does not hold get NXDOMAIN.
	Hosts []string
	// CPU, when >= 0, pins the server to that CPU with taskset. Zero value:
	// CPU 0; use -1 for no pinning.
	CPU int
}

// CoreDNS is a coredns child process serving UDP and TCP on 127.0.0.1.
type CoreDNS struct {
	// Addr is host:port (the same port for UDP and TCP).
	Addr string
	p    *process
	dir  string
}

// StartCoreDNS writes a Corefile with the hosts plugin, starts coredns on
// a free loopback port and waits until it answers over TCP.
func StartCoreDNS(opts CoreDNSOptions) (*CoreDNS, error) {
	bin, err := CoreDNSBinary()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "kmep-coredns-")
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	hosts := strings.Join(opts.Hosts, "\n")
	corefile := fmt.Sprintf(".:%d {\n  bind 127.0.0.1\n  hosts {\n%s\n  }\n}\n", port, hosts)
	if err := os.WriteFile(filepath.Join(dir, "Corefile"), []byte(corefile), 0o644); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	args := []string{bin, "-conf", filepath.Join(dir, "Corefile"), "-quiet"}
	if opts.CPU >= 0 {
		args = append([]string{"taskset", "-c", strconv.Itoa(opts.CPU)}, args...)
	}
	c := &CoreDNS{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir}
	if c.p, err = startProcess(dir, "coredns.log", nil, args[0], args[1:]...); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	err = c.p.waitUntil(10*time.Second, "coredns", func() error {
		conn, err := net.DialTimeout("tcp", c.Addr, 100*time.Millisecond)
		if err == nil {
			_ = conn.Close()
		}
		return err
	})
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Close stops coredns and removes its directory.
func (c *CoreDNS) Close() {
	c.p.stop()
	_ = os.RemoveAll(c.dir)
}

// NewCoreDNS starts CoreDNS for one test and closes it at cleanup. When
// the binary cannot be found or built (no module proxy), the test is
// skipped with the reason.
func NewCoreDNS(t testing.TB, opts CoreDNSOptions) *CoreDNS {
	t.Helper()
	if _, err := CoreDNSBinary(); err != nil {
		t.Skipf("SKIPPED (real server missing): CoreDNS %s is not available (%v); make testbins builds it", CoreDNSVersion, err)
	}
	c, err := StartCoreDNS(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}
