package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
)

// report is everything one run measured.
type report struct {
	Machine   machine         `json:"machine"`
	Settings  settings        `json:"settings"`
	Results   []result        `json:"results"`
	Discovery *discoveryRatio `json:"discovery,omitempty"`
	Startup   []startupResult `json:"startup,omitempty"`
}

// machine describes where the run happened.
type machine struct {
	GoVersion   string `json:"goVersion"`
	OS          string `json:"os"`
	Arch        string `json:"arch"`
	GOMAXPROCS  int    `json:"gomaxprocs"`
	NumCPU      int    `json:"numCPU"`
	LoadAverage string `json:"loadAverage,omitempty"`
	Wrk         string `json:"wrk,omitempty"`
	Redis       string `json:"redis,omitempty"`
}

// settings are the run's parameters.
type settings struct {
	Conns     int      `json:"conns"`
	DurationS float64  `json:"durationSeconds"`
	WarmupS   float64  `json:"warmupSeconds"`
	Services  int      `json:"services"`
	Apps      int      `json:"apps"`
	Generator string   `json:"discoveryGenerator"`
	Phases    []string `json:"phases"`
}

// result is one measured load.
type result struct {
	Phase     string  `json:"phase"`
	Target    string  `json:"target"`
	Request   string  `json:"request"`
	Generator string  `json:"generator"`
	Conns     int     `json:"conns"`
	Requests  int64   `json:"requests"`
	Errors    int64   `json:"errors"`
	ElapsedS  float64 `json:"elapsedSeconds"`
	RPS       float64 `json:"requestsPerSecond"`
	P50Ms     float64 `json:"p50Ms"`
	P99Ms     float64 `json:"p99Ms"`
	// Goal is the target figure, e.g. "≥ 3000 req/s" ("" when none).
	Goal    string `json:"goal,omitempty"`
	GoalMet *bool  `json:"goalMet,omitempty"`
	// FirstError describes the first failure ("" when none).
	FirstError string `json:"firstError,omitempty"`
}

// discoveryRatio compares kmep's discovery with the baseline server.
type discoveryRatio struct {
	BodyBytes     int     `json:"bodyBytes"`
	BaselineRPS   float64 `json:"baselineRequestsPerSecond"`
	KmepRPS       float64 `json:"kmepRequestsPerSecond"`
	Ratio         float64 `json:"kmepOverBaseline"`
	BaselineP99Ms float64 `json:"baselineP99Ms"`
	KmepP99Ms     float64 `json:"kmepP99Ms"`
}

// startupResult is the start time of one function binary.
type startupResult struct {
	Binary    string  `json:"binary"`
	SizeBytes int64   `json:"sizeBytes"`
	Runs      int     `json:"runs"`
	Failures  int     `json:"failures"`
	MinMs     float64 `json:"minMs"`
	MedianMs  float64 `json:"medianMs"`
	MaxMs     float64 `json:"maxMs"`
	Goal      string  `json:"goal"`
	GoalMet   bool    `json:"goalMet"`
	// FirstError describes the first failed start ("" when none).
	FirstError string `json:"firstError,omitempty"`
}

func ms(d time.Duration) float64 { return round(float64(d) / float64(time.Millisecond)) }

// round keeps three decimals.
func round(f float64) float64 { return math.Round(f*1000) / 1000 }

func fromLoad(phase, target, what, gen string, conns int, lr loadResult) result {
	return result{Phase: phase, Target: target, Request: what, Generator: gen, Conns: conns,
		Requests: lr.Requests, Errors: lr.Errors, ElapsedS: round(lr.Elapsed.Seconds()), RPS: round(lr.rps()),
		P50Ms: ms(lr.Latency.quantile(0.50)), P99Ms: ms(lr.Latency.quantile(0.99)), FirstError: lr.FirstError}
}

func fromWrk(phase, target, what string, conns int, w wrkResult) result {
	r := result{Phase: phase, Target: target, Request: what, Generator: genWrk, Conns: conns,
		Requests: w.Requests, Errors: w.failures(), ElapsedS: round(w.Elapsed.Seconds()), RPS: round(w.RPS),
		P50Ms: ms(w.P50), P99Ms: ms(w.P99)}
	var why []string
	if w.Non2xx > 0 {
		why = append(why, fmt.Sprintf("%d non-2xx/3xx responses", w.Non2xx))
	}
	if w.SocketErrors > 0 {
		why = append(why, "socket errors: "+w.SocketDetail)
	}
	r.FirstError = strings.Join(why, "; ")
	return r
}

// goalRPS sets the goal of a rate: met when the rate reaches it without
// errors.
func (r *result) goalRPS(goal float64) {
	r.Goal = fmt.Sprintf("≥ %.0f req/s", goal)
	met := r.Errors == 0 && r.Requests > 0 && r.RPS >= goal
	r.GoalMet = &met
}

// fill sets the figures from the measured start times.
func (r *startupResult) fill(times []time.Duration) {
	r.Goal = fmt.Sprintf("median ≤ %d ms", goalStartup.Milliseconds())
	if len(times) == 0 {
		return
	}
	s := slices.Clone(times)
	slices.Sort(s)
	r.MinMs, r.MaxMs, r.MedianMs = ms(s[0]), ms(s[len(s)-1]), ms(median(s))
	r.GoalMet = r.Failures == 0 && median(s) <= goalStartup
}

// median of sorted values: the middle one, or the mean of the two middle
// ones.
func median(sorted []time.Duration) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// failed counts the results with errors or failed starts.
func (rep *report) failed() int {
	n := 0
	for _, r := range rep.Results {
		if r.Errors > 0 || r.Requests == 0 {
			n++
		}
	}
	for _, s := range rep.Startup {
		if s.Failures > 0 || s.Runs == 0 {
			n++
		}
	}
	return n
}

func writeJSON(w io.Writer, rep *report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// writeMarkdown prints the report as Markdown: the machine facts, the
// results table, the discovery comparison, the start times and every
// error.
func writeMarkdown(w io.Writer, rep *report) error {
	var b strings.Builder
	m, s := rep.Machine, rep.Settings
	b.WriteString("## kmep HTTP benchmark\n\n")
	fmt.Fprintf(&b, "- Go: %s %s/%s, GOMAXPROCS %d, NumCPU %d\n", m.GoVersion, m.OS, m.Arch, m.GOMAXPROCS, m.NumCPU)
	if m.LoadAverage != "" {
		fmt.Fprintf(&b, "- load average at start: %s\n", m.LoadAverage)
	}
	if m.Redis != "" {
		fmt.Fprintf(&b, "- %s (AOF, appendfsync everysec)\n", m.Redis)
	}
	wrk := "not on PATH"
	if m.Wrk != "" {
		wrk = m.Wrk
	}
	fmt.Fprintf(&b, "- discovery generator: %s (wrk: %s); other phases: Go generator\n", s.Generator, wrk)
	fmt.Fprintf(&b, "- %d connections, %s per timed phase after a %s warm-up, %d services over %d apps, everything on 127.0.0.1\n\n",
		s.Conns, seconds(s.DurationS), seconds(s.WarmupS), s.Services, s.Apps)

	if len(rep.Results) > 0 {
		b.WriteString("| Phase | Target | Request | Gen | Conns | Requests | Errors | req/s | p50 | p99 | Goal |\n")
		b.WriteString("|---|---|---|---|--:|--:|--:|--:|--:|--:|---|\n")
		for _, r := range rep.Results {
			goal := r.Goal
			if r.GoalMet != nil {
				goal += map[bool]string{true: " ✅", false: " ❌"}[*r.GoalMet]
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %d | %d | %d | %.0f | %s | %s | %s |\n",
				r.Phase, r.Target, strings.ReplaceAll(r.Request, "|", `\|`), r.Generator, r.Conns, r.Requests, r.Errors,
				r.RPS, fmtMs(r.P50Ms), fmtMs(r.P99Ms), goal)
		}
		b.WriteString("\n")
	}
	if d := rep.Discovery; d != nil {
		fmt.Fprintf(&b, "Discovery: kmep/baseline = **%.2f** (%.0f vs %.0f req/s); p99 %s vs %s (same %d-byte JSON body, same generator).\n\n",
			d.Ratio, d.KmepRPS, d.BaselineRPS, fmtMs(d.KmepP99Ms), fmtMs(d.BaselineP99Ms), d.BodyBytes)
	}
	if len(rep.Startup) > 0 {
		b.WriteString("| Binary (stripped) | Size | Starts | Failed | min | median | max | Goal |\n")
		b.WriteString("|---|--:|--:|--:|--:|--:|--:|---|\n")
		for _, r := range rep.Startup {
			fmt.Fprintf(&b, "| %s | %.1f MiB | %d | %d | %s | %s | %s | %s %s |\n", r.Binary, float64(r.SizeBytes)/(1<<20),
				r.Runs, r.Failures, fmtMs(r.MinMs), fmtMs(r.MedianMs), fmtMs(r.MaxMs), r.Goal,
				map[bool]string{true: "✅", false: "❌"}[r.GoalMet])
		}
		b.WriteString("\nStart time: from just before exec to the first 200 from GET /healthz, polled every 1 ms.\n\n")
	}
	var errs []string
	for _, r := range rep.Results {
		if r.Errors > 0 || r.Requests == 0 || r.FirstError != "" {
			errs = append(errs, fmt.Sprintf("- %s %s: %d errors in %d requests; first: %s", r.Phase, r.Target, r.Errors, r.Requests, r.FirstError))
		}
	}
	for _, r := range rep.Startup {
		if r.Failures > 0 || r.Runs == 0 {
			errs = append(errs, fmt.Sprintf("- startup %s: %d failed starts; first: %s", r.Binary, r.Failures, r.FirstError))
		}
	}
	if len(errs) > 0 {
		b.WriteString("**Errors**\n\n" + strings.Join(errs, "\n") + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func seconds(s float64) string { return time.Duration(s * float64(time.Second)).String() }

// fmtMs prints milliseconds with three significant digits or so.
func fmtMs(v float64) string {
	switch {
	case v < 10:
		return fmt.Sprintf("%.2f ms", v)
	case v < 100:
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.0f ms", v)
}
