package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// wrkResult is what one wrk run printed.
type wrkResult struct {
	// Requests is the "N requests in T" count: every completed response.
	Requests int64
	// Elapsed is the T of that line.
	Elapsed time.Duration
	// RPS is the "Requests/sec" figure.
	RPS float64
	// P50 and P99 are the Latency Distribution's 50% and 99% lines.
	P50, P99 time.Duration
	// Non2xx is the "Non-2xx or 3xx responses" count (wrk counts status
	// ≥ 400 there); 0 when wrk printed no such line.
	Non2xx int64
	// SocketErrors is the sum of the "Socket errors" line (connect, read,
	// write, timeout); 0 when wrk printed no such line.
	SocketErrors int64
	// SocketDetail is that line's text after the colon ("" when absent).
	SocketDetail string
}

// failures is every failure wrk reported.
func (r wrkResult) failures() int64 { return r.Non2xx + r.SocketErrors }

// parseWrk reads the output of wrk --latency.
func parseWrk(out []byte) (wrkResult, error) {
	var r wrkResult
	var haveRPS, haveTotal, have50, have99 bool
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		f := strings.Fields(line)
		var err error
		switch {
		case strings.HasPrefix(line, "Requests/sec:") && len(f) == 2:
			r.RPS, err = strconv.ParseFloat(f[1], 64)
			haveRPS = err == nil
		case len(f) >= 4 && f[1] == "requests" && f[2] == "in":
			if r.Requests, err = strconv.ParseInt(f[0], 10, 64); err == nil {
				r.Elapsed, err = time.ParseDuration(strings.TrimSuffix(f[3], ","))
			}
			haveTotal = err == nil
		case len(f) == 2 && f[0] == "50%":
			r.P50, err = time.ParseDuration(f[1])
			have50 = err == nil
		case len(f) == 2 && f[0] == "99%":
			r.P99, err = time.ParseDuration(f[1])
			have99 = err == nil
		case strings.HasPrefix(line, "Non-2xx or 3xx responses:") && len(f) == 5:
			r.Non2xx, err = strconv.ParseInt(f[4], 10, 64)
		case strings.HasPrefix(line, "Socket errors:"):
			r.SocketDetail = strings.TrimSpace(strings.TrimPrefix(line, "Socket errors:"))
			r.SocketErrors, err = sumSocketErrors(r.SocketDetail)
		}
		if err != nil {
			return wrkResult{}, fmt.Errorf("wrk output line %q: %w", line, err)
		}
	}
	var missing []string
	for name, ok := range map[string]bool{"Requests/sec": haveRPS, "N requests in T": haveTotal,
		"50% latency (was --latency given?)": have50, "99% latency (was --latency given?)": have99} {
		if !ok {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return wrkResult{}, fmt.Errorf("wrk output lacks %s", strings.Join(missing, ", "))
	}
	return r, nil
}

// sumSocketErrors adds up "connect 0, read 1, write 0, timeout 32".
func sumSocketErrors(s string) (int64, error) {
	var sum int64
	for _, part := range strings.Split(s, ",") {
		f := strings.Fields(part)
		if len(f) != 2 {
			return 0, fmt.Errorf("socket error count %q", part)
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("socket error count %q: %w", part, err)
		}
		sum += n
	}
	return sum, nil
}

// wrkOptions configure runWrk.
type wrkOptions struct {
	// Path is the wrk binary. Required.
	Path string
	// URL is the target. Required; on a loopback address.
	URL string
	// Headers are added to every request ("Name: value").
	Headers []string
	// Conns is -c. Required (> 0).
	Conns int
	// Duration is -d, rounded up to whole seconds (wrk takes no less).
	Duration time.Duration
	// Method and Body, when Method is set, make every request that method
	// with that JSON body (through a wrk Lua script). Zero value: GET.
	Method string
	Body   []byte
	// Paths, when set, are requested round robin (path and query only),
	// instead of URL's path.
	Paths []string
}

// wrkScript writes the Lua script that sets wrk's method and body (and,
// with paths, requests them round robin), in dir.
func wrkScript(dir, method string, body []byte, paths []string) (string, error) {
	if bytes.Contains(body, []byte("]==]")) {
		return "", fmt.Errorf("wrk body contains the Lua long-string terminator")
	}
	script := "wrk.method = \"" + method + "\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.body = [==[" + string(body) + "]==]\n"
	if len(paths) > 0 {
		script += "local paths = {\n"
		for _, p := range paths {
			if strings.ContainsAny(p, "\"\\\n") {
				return "", fmt.Errorf("wrk path %q needs quoting", p)
			}
			script += "  \"" + p + "\",\n"
		}
		script += "}\nlocal i = 0\nrequest = function()\n  i = i + 1\n  return wrk.format(nil, paths[(i % #paths) + 1])\nend\n"
	}
	p := filepath.Join(dir, "kmepbench-wrk.lua")
	return p, os.WriteFile(p, []byte(script), 0o600)
}

// wrkSeconds is the -d wrk runs for a duration: whole seconds, at least 1.
func wrkSeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}

// runWrk runs wrk --latency with one thread and parses what it printed.
// One wrk thread drives this machine's HTTP ceiling (~43k req/s) by itself;
// a second one only competes with the server for the 2 cores and inflates
// everyone's p99 (measured: bare net/http p99 17.6 ms with -t2, 5.5 ms
// with -t1, at the same throughput).
func runWrk(ctx context.Context, o wrkOptions) (wrkResult, error) {
	if err := checkLoopbackURL(o.URL); err != nil {
		return wrkResult{}, err
	}
	secs := wrkSeconds(o.Duration)
	args := []string{"-t1", "-c" + strconv.Itoa(o.Conns),
		"-d" + strconv.Itoa(secs) + "s", "--latency"}
	for _, h := range o.Headers {
		args = append(args, "-H", h)
	}
	if o.Method != "" {
		dir, err := os.MkdirTemp("", "kmepbench-")
		if err != nil {
			return wrkResult{}, err
		}
		defer os.RemoveAll(dir)
		script, err := wrkScript(dir, o.Method, o.Body, o.Paths)
		if err != nil {
			return wrkResult{}, err
		}
		args = append(args, "-s", script)
	}
	args = append(args, o.URL)
	// wrk stops on its own after -d; the context is a backstop.
	ctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, o.Path, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return wrkResult{}, fmt.Errorf("wrk %s: %w: %s", o.URL, err, snippet(append(stderr.Bytes(), stdout.Bytes()...)))
		}
		return wrkResult{}, fmt.Errorf("wrk %s: %w", o.URL, err)
	}
	return parseWrk(stdout.Bytes())
}

// wrkVersion is the first line wrk -v prints ("" when it prints none).
func wrkVersion(path string) string {
	out, _ := exec.Command(path, "-v").CombinedOutput() // wrk -v exits 1
	line, _, _ := strings.Cut(string(out), "\n")
	if !strings.HasPrefix(line, "wrk") {
		return ""
	}
	line, _, _ = strings.Cut(line, " Copyright")
	return strings.TrimSpace(line)
}
