package allinone_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// readmeBlock is one shell block of the README and what the README says it
// prints.
type readmeBlock struct {
	line   int      // of the opening fence
	script string   // the block's text
	want   []string // the "prints" block's lines; nil: prints nothing
	skip   string   // the reason given in a "<!-- not run: ... -->" line
}

// readmeBlocks reads the shell blocks of README.md from the walkthrough up
// to "## Deploying on Knative", each with the ```output block that follows
// it (after at most a "prints:" line).
func readmeBlocks(t *testing.T, path string) []readmeBlock {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(raw), "\n")
	start, end := -1, len(lines)
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, "## Walkthrough"):
			start = i
		case start >= 0 && strings.HasPrefix(l, "## Deploying on Knative"):
			end = i
		}
		if end < len(lines) {
			break
		}
	}
	if start < 0 {
		t.Fatal("README.md has no Walkthrough section")
	}
	fence := func(i int, info string) (body []string, next int) {
		for j := i + 1; j < end; j++ {
			if lines[j] == "```" {
				return lines[i+1 : j], j + 1
			}
		}
		t.Fatalf("README.md:%d: ```%s block not closed", i+1, info)
		return nil, end
	}
	var blocks []readmeBlock
	for i := start; i < end; i++ {
		if lines[i] != "```sh" {
			continue
		}
		b := readmeBlock{line: i + 1}
		if i > 0 {
			if r, ok := strings.CutPrefix(lines[i-1], "<!-- not run:"); ok {
				b.skip = strings.TrimSpace(strings.TrimSuffix(r, "-->"))
				if b.skip == "" {
					t.Fatalf("README.md:%d: a block not run must say why", i)
				}
			}
		}
		body, next := fence(i, "sh")
		b.script = strings.Join(body, "\n")
		// The output block, if any, follows after blank lines and "prints:".
		j := next
		for j < end && (strings.TrimSpace(lines[j]) == "" || strings.TrimSpace(lines[j]) == "prints:") {
			j++
		}
		if j < end && lines[j] == "```output" {
			b.want, next = fence(j, "output")
			if b.want == nil {
				b.want = []string{}
			}
		}
		blocks = append(blocks, b)
		i = next - 1
	}
	return blocks
}

// readmeLine matches one printed line against a README line, where "…"
// stands for any text.
func readmeLine(want, got string) bool {
	parts := strings.Split(want, "…")
	for i, p := range parts {
		parts[i] = regexp.QuoteMeta(p)
	}
	return regexp.MustCompile("^" + strings.Join(parts, ".*") + "$").MatchString(got)
}

func readmeFreePort(t *testing.T, network string) int {
	t.Helper()
	if network == "udp" {
		// The DNS address is UDP and TCP: find a port free for both.
		for range 20 {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			port := l.Addr().(*net.TCPAddr).Port
			u, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
			l.Close()
			if err == nil {
				u.Close()
				return port
			}
		}
		t.Fatal("no port free for TCP and UDP")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestREADME runs the README's shell blocks, in order, in one shell, as a
// newcomer would: against the platform's binary started as `make run`
// starts it (KMEP_CALLBACK_ALLOW=127.0.0.0/8, data in .kmep/), from a
// directory that looks like the repository root (its top-level entries
// linked). Each block's output must be what the README says it prints.
// The only changes to the text are the addresses, so that the test cannot
// collide with a `make run` on this machine: 127.0.0.1:8080 (the
// platform), port 5353 (its DNS), 9999 (the receiver) and 127.0.0.1:8090
// (the sidecar, which also gets MEP_AGENT_ADDR) become free ports.
func TestREADME(t *testing.T) {
	for _, tool := range []string{"bash", "curl", "jq", "dig"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIPPED: the README's commands need %s", tool)
		}
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("SKIPPED: make run needs redis-server")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	blocks := readmeBlocks(t, filepath.Join(root, "README.md"))
	run := 0
	for _, b := range blocks {
		if b.skip == "" {
			run++
		}
	}
	if run < 8 {
		t.Fatalf("only %d runnable blocks in the walkthrough: the README's parser or its text broke", run)
	}

	// A directory that looks like the repository root, with its own bin/
	// and .kmep/.
	dir := t.TempDir()
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if n := e.Name(); n != "bin" && n != ".kmep" && n != ".git" {
			if err := os.Symlink(filepath.Join(root, n), filepath.Join(dir, n)); err != nil {
				t.Fatal(err)
			}
		}
	}
	kmep := filepath.Join(dir, "bin", "kmep")
	if out, err := exec.Command("go", "build", "-o", kmep, "github.com/kmep-io/kmep/local/cmd/kmep").CombinedOutput(); err != nil {
		t.Fatalf("build kmep: %v\n%s", err, out)
	}
	ports := map[string]int{"api": readmeFreePort(t, "tcp"), "dns": readmeFreePort(t, "udp"), "receiver": readmeFreePort(t, "tcp"), "agent": readmeFreePort(t, "tcp")}
	addr := func(p int) string { return "127.0.0.1:" + strconv.Itoa(p) }
	subst := strings.NewReplacer(
		"127.0.0.1:8080", addr(ports["api"]),
		"-p 5353", "-p "+strconv.Itoa(ports["dns"]),
		"9999", strconv.Itoa(ports["receiver"]),
		"127.0.0.1:8090", addr(ports["agent"]),
	)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var platformLog bytes.Buffer
	platform := exec.CommandContext(ctx, kmep)
	platform.Dir = dir
	platform.Env = append(os.Environ(), "KMEP_CALLBACK_ALLOW=127.0.0.0/8",
		"KMEP_ADDR="+addr(ports["api"]), "KMEP_DNS_ADDR="+addr(ports["dns"]))
	platform.Stdout, platform.Stderr = &platformLog, &platformLog
	platform.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := platform.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = syscall.Kill(-platform.Process.Pid, syscall.SIGTERM)
		_ = platform.Wait()
	}()
	readmeWaitHealthy(t, "http://"+addr(ports["api"])+"/healthz", &platformLog)

	// One shell runs every block; a marker line after each splits the output.
	const marker = "@@kmep-readme-block@@"
	var script strings.Builder
	script.WriteString("set -euo pipefail\n")
	var ran []readmeBlock
	for _, b := range blocks {
		if b.skip != "" {
			t.Logf("README.md:%d: not run: %s", b.line, b.skip)
			continue
		}
		fmt.Fprintf(&script, "%s\necho %s\n", subst.Replace(b.script), marker)
		ran = append(ran, b)
	}
	sh := exec.CommandContext(ctx, "bash", "-c", script.String())
	sh.Dir = dir
	sh.Env = append(os.Environ(), "MEP_AGENT_ADDR="+addr(ports["agent"]))
	sh.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stdout, stderr bytes.Buffer
	sh.Stdout, sh.Stderr = &stdout, &stderr
	shErr := sh.Run()
	_ = syscall.Kill(-sh.Process.Pid, syscall.SIGKILL) // what the blocks left running

	var outputs [][]string
	var cur []string
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if sc.Text() == marker {
			outputs = append(outputs, cur)
			cur = nil
			continue
		}
		cur = append(cur, sc.Text())
	}
	for i, b := range ran {
		if i >= len(outputs) {
			t.Fatalf("README.md:%d: the block failed (%v)\n%s\nstderr:\n%s\nplatform log (tail):\n%s",
				b.line, shErr, b.script, stderr.String(), readmeTail(platformLog.String(), 30))
		}
		got := outputs[i]
		want := make([]string, len(b.want))
		for j, w := range b.want {
			want[j] = subst.Replace(w)
		}
		ok := len(got) == len(want)
		for j := 0; ok && j < len(want); j++ {
			ok = readmeLine(want[j], got[j])
		}
		if !ok {
			t.Errorf("README.md:%d: the block printed\n%s\nbut the README says it prints\n%s\n(stderr so far:\n%s)",
				b.line, strings.Join(got, "\n"), strings.Join(want, "\n"), stderr.String())
		}
	}
	if shErr != nil {
		t.Errorf("shell: %v\nstderr:\n%s", shErr, stderr.String())
	}
}

// readmeWaitHealthy waits until url answers 200.
func readmeWaitHealthy(t *testing.T, url string, log *bytes.Buffer) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if exec.Command("curl", "-sf", "-o", "/dev/null", url).Run() == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the platform did not get healthy at %s\n%s", url, log.String())
}

func readmeTail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// The README's placeholder matches what differs and nothing else.
func TestReadmeLine(t *testing.T) {
	for _, tc := range []struct {
		want, got string
		ok        bool
	}{
		{`{"a":"…"}`, `{"a":"xyz"}`, true},
		{`{"a":"…"}`, `{"a":""}`, true},
		{`{"a":"…"}`, `{"b":"xyz"}`, false},
		{`204`, `204`, true},
		{`204`, `2040`, false},
		{`a.b`, `aXb`, false},
		{`x … y`, `x 1 2 y`, true},
	} {
		if got := readmeLine(tc.want, tc.got); got != tc.ok {
			t.Errorf("readmeLine(%q, %q) = %v, want %v", tc.want, tc.got, got, tc.ok)
		}
	}
}
