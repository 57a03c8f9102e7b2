// Command kmepbench measures kmep end to end over HTTP on loopback, the
// second line of make bench. It starts a redis-server (AOF on) and the
// all-in-one platform in this process, and prints a Markdown table of:
//
//   - register: POST of -services services over 10 app instances (each its
//     own AK/SK and token), -conns keep-alive connections;
//   - discovery: GET /services?ser_name=X for -duration, and the same load
//     against a bare net/http server answering kmep's response bytes as
//     constant JSON, with the ratio of the two;
//   - token: POST /mep/token, each request freshly signed, one AK per
//     connection;
//   - heartbeat: PATCH .../liveness of the registered services, round robin;
//   - startup: each function binary (token, services) built stripped and
//     started 10 times, timed from exec to the first 200 from /healthz.
//
// Every phase reports requests/s, p50, p99 and its errors (non-2xx answers
// included); the command exits 1 when any phase had errors. Discovery uses
// wrk when it is on PATH (-gen auto), else the Go generator; the other
// phases sign or vary every request and always use the Go generator.
// Everything the command starts it stops, and it only talks to 127.0.0.1.
//
// Usage:
//
//	kmepbench [-duration 10s] [-warmup 1s] [-conns 32] [-services 10000]
//	          [-gen auto|go|wrk] [-phases register,discovery,token,heartbeat,startup]
//	          [-json] [-v] [-cpuprofile file]
//
// Results go to stdout (Markdown, or JSON with -json), progress to stderr.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
)

func main() {
	os.Exit(runMain(os.Args[1:], os.Stdout, os.Stderr))
}

func runMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("kmepbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg config
	fs.DurationVar(&cfg.Duration, "duration", defaultDuration, "how long each timed phase measures (wrk rounds up to whole seconds)")
	fs.DurationVar(&cfg.Warmup, "warmup", defaultWarmup, "unrecorded warm-up before each timed measurement")
	fs.IntVar(&cfg.Conns, "conns", 32, "concurrent keep-alive connections")
	fs.IntVar(&cfg.Services, "services", 10000, "services to register")
	fs.StringVar(&cfg.Gen, "gen", genAuto, "discovery load generator: go, wrk, or auto (wrk when on PATH)")
	phases := fs.String("phases", strings.Join(allPhases, ","), "comma list of phases to run")
	asJSON := fs.Bool("json", false, "print the results as JSON instead of Markdown")
	verbose := fs.Bool("v", false, "also log the platform's own warnings to stderr")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run (platform included) to `file`")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "kmepbench: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	var err error
	if cfg.Phases, err = parsePhases(*phases); err != nil {
		fmt.Fprintln(stderr, "kmepbench:", err)
		return 2
	}
	cfg.WrkPath, _ = exec.LookPath("wrk")
	cfg.GoPath, _ = exec.LookPath("go")
	cfg.RedisServer, _ = exec.LookPath("redis-server")
	if cfg.RedisServer == "" {
		fmt.Fprintln(stderr, "kmepbench: redis-server is not on PATH (Debian package redis-server)")
		return 1
	}
	cfg.Log = slog.New(slog.NewTextHandler(stderr, nil)).With("component", "kmepbench")
	platformLevel := slog.LevelError
	if *verbose {
		platformLevel = slog.LevelWarn
	}
	cfg.PlatformLog = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: platformLevel})).With("component", "kmep")

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(stderr, "kmepbench:", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(stderr, "kmepbench:", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, cfg)
	if rep != nil {
		write := writeMarkdown
		if *asJSON {
			write = writeJSON
		}
		if werr := write(stdout, rep); werr != nil {
			fmt.Fprintln(stderr, "kmepbench:", werr)
			return 1
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "kmepbench:", err)
		return 1
	}
	if n := rep.failed(); n > 0 {
		fmt.Fprintf(stderr, "kmepbench: %d measurement(s) had errors (see the table)\n", n)
		return 1
	}
	return 0
}
