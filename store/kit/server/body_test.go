package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kmep-io/kmep/store/kit/problem"
	"github.com/kmep-io/kmep/store/kit/rest"
	"github.com/kmep-io/kmep/store/kit/server"
)

// serve runs server.Run with o on a loopback port until the test ends and
// returns its address.
func serve(t *testing.T, o server.Options) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o.Listener = ln
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- server.Run(ctx, o) }()
	t.Cleanup(func() {
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return ln.Addr().String()
}

// readJSON is a handler that reads its body as every kmep JSON handler
// does (rest.ReadBody) and answers 200 with the number of bytes read.
var readJSON = problem.Handler(nil, func(w http.ResponseWriter, r *http.Request) error {
	b, err := rest.ReadBody(w, r, 4<<20)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%d", len(b))
	return err
})

// slowResult is what a slow client saw.
type slowResult struct {
	status  int // 0: the connection was closed without an answer
	problem problem.Details
	sent    int           // body bytes written before the answer or the close
	elapsed time.Duration // from the first body byte to the answer or the close
	closed  bool          // the server closed the connection after it
}

// slowPost opens a TCP connection to addr, sends a POST of path with a
// Content-Length of size and then send body bytes ('x'), one every gap,
// and reads what the server does about it: an answer, then whether it
// closes the connection (within wait).
func slowPost(t *testing.T, addr, path string, size, send int, gap, wait time.Duration) slowResult {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: kmep\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", path, size); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	stop := make(chan struct{})
	sent := make(chan int, 1)
	go func() {
		n := 0
		defer func() { sent <- n }()
		for n < send {
			if _, err := c.Write([]byte("x")); err != nil {
				return
			}
			n++
			select {
			case <-stop:
				return
			case <-time.After(gap):
			}
		}
	}()
	var res slowResult
	_ = c.SetReadDeadline(time.Now().Add(wait))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	res.elapsed = time.Since(start)
	close(stop)
	if err == nil {
		res.status = resp.StatusCode
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		_ = json.Unmarshal(body, &res.problem)
		// The connection must end after the answer.
		_, err = br.ReadByte()
	}
	var ne net.Error
	res.closed = err != nil && !(errors.As(err, &ne) && ne.Timeout())
	res.sent = <-sent
	return res
}

// A body that arrives too slowly, or stops below its Content-Length, is
// answered 408 and its connection closed, about BodyTimeout after the
// handler began to read it; bodies that keep the minimum rate, and
// handlers that work long after reading their body, are not cut short.
func TestBodyTimeout(t *testing.T) {
	const timeout = 400 * time.Millisecond
	mux := http.NewServeMux()
	mux.Handle("/read", readJSON)
	mux.HandleFunc("/ignore", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ignored")) })
	mux.HandleFunc("/long", func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		select {
		case <-time.After(3 * timeout):
			_, _ = w.Write([]byte("finished"))
		case <-r.Context().Done():
			// The client cannot see this; the test sees a short answer.
			_, _ = w.Write([]byte("cancelled"))
		}
	})
	addr := serve(t, server.Options{Handler: mux, BodyTimeout: timeout, BodyMinRate: 2000})

	t.Run("1 byte per 100 ms", func(t *testing.T) {
		t.Parallel()
		r := slowPost(t, addr, "/read", 1000, 1000, 100*time.Millisecond, 10*time.Second)
		if r.status != http.StatusRequestTimeout || r.problem.Status != 408 || r.problem.Field != "body" || !r.closed {
			t.Fatalf("got %+v, want a 408 ProblemDetails naming body, then a closed connection", r)
		}
		if r.elapsed > 5*time.Second {
			t.Errorf("answered after %v, %d bytes: the body was not bounded", r.elapsed, r.sent)
		}
		t.Logf("slow body: 408 after %v (BodyTimeout %v), %d of 1000 bytes sent", r.elapsed.Round(time.Millisecond), timeout, r.sent)
	})
	t.Run("stalled below its Content-Length", func(t *testing.T) {
		t.Parallel()
		r := slowPost(t, addr, "/read", 100, 10, 0, 10*time.Second)
		if r.status != http.StatusRequestTimeout || !r.closed {
			t.Fatalf("got %+v, want 408 and a closed connection", r)
		}
		t.Logf("stalled body: 408 after %v", r.elapsed.Round(time.Millisecond))
	})
	t.Run("unread by the handler", func(t *testing.T) {
		t.Parallel()
		r := slowPost(t, addr, "/ignore", 100, 100, 100*time.Millisecond, 10*time.Second)
		if r.status != http.StatusOK || !r.closed {
			t.Fatalf("got %+v, want the handler's 200, then a closed connection", r)
		}
	})
	t.Run("at the minimum rate", func(t *testing.T) {
		t.Parallel()
		// 4000 bytes at ~4000 B/s take ~1 s > timeout, within timeout + 4000/2000 s.
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "POST /read HTTP/1.1\r\nHost: kmep\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n\r\n")
		for range 40 {
			if _, err := c.Write([]byte(strings.Repeat("x", 100))); err != nil {
				t.Fatal(err)
			}
			time.Sleep(25 * time.Millisecond)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(body) != "4000" {
			t.Fatalf("got %d %q, want 200 4000", resp.StatusCode, body)
		}
	})
	t.Run("a large body at full speed", func(t *testing.T) {
		t.Parallel()
		res, err := http.Post("http://"+addr+"/read", "application/json", strings.NewReader(strings.Repeat("x", 2<<20)))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || string(body) != fmt.Sprint(2<<20) {
			t.Fatalf("got %d %q", res.StatusCode, body)
		}
	})
	t.Run("a handler working after its body", func(t *testing.T) {
		t.Parallel()
		res, err := http.Post("http://"+addr+"/long", "application/json", strings.NewReader(`{"gracefulTimeout":1}`))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if string(body) != "finished" {
			t.Fatalf("got %d %q: the body's deadline cut the handler short", res.StatusCode, body)
		}
	})
	t.Run("keep-alive after a body read in time", func(t *testing.T) {
		t.Parallel()
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr}
		for i := range 3 {
			res, err := c.Post("http://"+addr+"/read", "application/json", strings.NewReader(`{}`))
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != 200 {
				t.Fatalf("request %d: %d", i, res.StatusCode)
			}
			// Longer than the body deadline: the idle connection must
			// still be usable (no deadline left behind).
			time.Sleep(timeout + 100*time.Millisecond)
		}
	})
}

// With the defaults, every server kmep runs (function binaries, the
// all-in-one, the agents' ports through RunAgent) closes a slow body after
// DefaultBodyTimeout: this is the figure the README gives.
func TestBodyTimeoutDefaults(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the 10 s default")
	}
	t.Run("Run", func(t *testing.T) {
		t.Parallel()
		addr := serve(t, server.Options{Handler: readJSON})
		r := slowPost(t, addr, "/", 1000, 1000, time.Second, 30*time.Second)
		if r.status != http.StatusRequestTimeout || !r.closed {
			t.Fatalf("got %+v, want 408 and a closed connection", r)
		}
		if r.elapsed < server.DefaultBodyTimeout-time.Second || r.elapsed > 3*server.DefaultBodyTimeout {
			t.Errorf("answered after %v, want about %v", r.elapsed, server.DefaultBodyTimeout)
		}
		t.Logf("default bound, body at 1 byte/s: 408 and close after %v (%d bytes)", r.elapsed.Round(time.Millisecond), r.sent)
	})
	t.Run("RunAgent", func(t *testing.T) {
		t.Parallel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- server.RunAgent(ctx, server.AgentOptions{Listener: ln, Handler: readJSON}, blockUntilDone)
		}()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("RunAgent: %v", err)
			}
		}()
		r := slowPost(t, ln.Addr().String(), "/metrics", 1000, 1000, time.Second, 30*time.Second)
		if r.status != http.StatusRequestTimeout || !r.closed {
			t.Fatalf("got %+v, want 408 and a closed connection", r)
		}
		t.Logf("agent port, body at 1 byte/s: 408 and close after %v", r.elapsed.Round(time.Millisecond))
	})
}
