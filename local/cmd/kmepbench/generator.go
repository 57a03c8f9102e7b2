package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// defaultMaxRequests bounds a timed run in count when loadOptions leaves
// MaxRequests zero: far above what one machine serves in a benchmark phase.
const defaultMaxRequests = 50_000_000

// maxResponseBody bounds how much of one response the generator reads.
const maxResponseBody = 1 << 20

// loadOptions configure runLoad.
type loadOptions struct {
	// Conns is the number of workers, each with a keep-alive connection of
	// its own. Required (> 0).
	Conns int
	// Duration bounds the run in time: no request starts after it. Required
	// (> 0).
	Duration time.Duration
	// MaxRequests bounds the run in count: requests n = 0 .. MaxRequests-1
	// are started, then the workers stop. Zero value: defaultMaxRequests.
	MaxRequests int64
	// Build makes request n (numbered across all workers in start order) for
	// worker w. An error counts as a failed request. The URL must be on a
	// loopback address. Required.
	Build func(w int, n int64) (*http.Request, error)
	// Check, when set, is called with each 2xx response and its body; an
	// error it returns makes the request count as failed. It is called
	// concurrently from the workers. Zero value: every 2xx answer counts as
	// a success.
	Check func(n int64, resp *http.Response, body []byte) error
	// Timeout bounds each request. Zero value: 10 s.
	Timeout time.Duration
}

// loadResult is what a run measured.
type loadResult struct {
	// Requests counts every request attempted: answered or failed.
	Requests int64
	// Errors counts non-2xx answers, transport failures, and requests that
	// Build or Check refused.
	Errors int64
	// Elapsed is the wall time from the first start to the last end.
	Elapsed time.Duration
	// Latency holds the time from sending to the end of the body of every
	// answered request (2xx or not).
	Latency *histogram
	// FirstError describes the first failure ("" when none).
	FirstError string
}

// rps is the rate of attempted requests per second.
func (r loadResult) rps() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// runLoad drives o.Conns concurrent keep-alive connections, each sending
// requests back to back, until o.Duration has passed, o.MaxRequests were
// started, or ctx ends. Requests in flight at the end are completed.
func runLoad(ctx context.Context, o loadOptions) loadResult {
	if o.MaxRequests <= 0 {
		o.MaxRequests = defaultMaxRequests
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	var (
		next     atomic.Int64
		firstMu  sync.Mutex
		firstErr string
		wg       sync.WaitGroup
	)
	fail := func(msg string) {
		firstMu.Lock()
		if firstErr == "" {
			firstErr = msg
		}
		firstMu.Unlock()
	}
	workers := make([]workerResult, o.Conns)
	start := time.Now()
	deadline := start.Add(o.Duration)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			workers[w] = runWorker(ctx, o, w, deadline, &next, fail)
		}()
	}
	wg.Wait()
	res := loadResult{Elapsed: time.Since(start), Latency: &histogram{}, FirstError: firstErr}
	for i := range workers {
		res.Requests += workers[i].requests
		res.Errors += workers[i].errors
		res.Latency.merge(&workers[i].latency)
	}
	return res
}

type workerResult struct {
	requests, errors int64
	latency          histogram
}

func runWorker(ctx context.Context, o loadOptions, w int, deadline time.Time, next *atomic.Int64, fail func(string)) workerResult {
	tr := &http.Transport{
		Proxy:               nil, // loopback only, whatever the environment says
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		MaxConnsPerHost:     1,
		MaxIdleConns:        1,
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: o.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var res workerResult
	failed := func(msg string) {
		res.errors++
		fail(msg)
	}
	for ctx.Err() == nil && time.Now().Before(deadline) {
		n := next.Add(1) - 1
		if n >= o.MaxRequests {
			break
		}
		res.requests++
		req, err := o.Build(w, n)
		if err != nil {
			failed(fmt.Sprintf("build request %d: %v", n, err))
			continue
		}
		if err := checkLoopback(req); err != nil {
			failed(err.Error())
			continue
		}
		t0 := time.Now()
		resp, err := client.Do(req.WithContext(ctx))
		if err != nil {
			failed(fmt.Sprintf("%s %s: %v", req.Method, req.URL.Path, err))
			continue
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
		resp.Body.Close()
		if err != nil {
			failed(fmt.Sprintf("%s %s: read body: %v", req.Method, req.URL.Path, err))
			continue
		}
		res.latency.record(time.Since(t0))
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			failed(fmt.Sprintf("%s %s: %s: %s", req.Method, req.URL.Path, resp.Status, snippet(body)))
			continue
		}
		if o.Check != nil {
			if err := o.Check(n, resp, body); err != nil {
				failed(fmt.Sprintf("%s %s: %v", req.Method, req.URL.Path, err))
			}
		}
	}
	return res
}

// checkLoopback refuses a request to anything but a loopback IP address.
func checkLoopback(r *http.Request) error {
	addr, err := netip.ParseAddr(r.URL.Hostname())
	if err != nil || !addr.IsLoopback() {
		return fmt.Errorf("refusing request to %q: the benchmark only talks to loopback addresses", r.URL.Host)
	}
	return nil
}

// checkLoopbackURL is checkLoopback for a URL string.
func checkLoopbackURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("target URL: %w", err)
	}
	return checkLoopback(&http.Request{URL: u})
}

// snippet is the start of a response body, on one line, for an error
// message.
func snippet(b []byte) string {
	const n = 300
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}
