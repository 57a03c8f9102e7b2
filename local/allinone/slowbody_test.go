package allinone_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kmep-io/kmep/local/allinone"
	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/store/kit/server"
)

// slowConn is a client sending a registration body at 1 byte/s.
type slowConn struct {
	c     net.Conn
	start time.Time
	// Set once the server answered or closed.
	status  int
	elapsed time.Duration
	closed  bool
}

// openSlow connects to addr and sends the headers of an authenticated
// registration with a 2000-byte Content-Length and its first body byte;
// the body then trickles at 1 byte/s until the server answers.
func openSlow(addr, token string) (*slowConn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	_, err = fmt.Fprintf(c, "POST /mep/mec_service_mgmt/v1/applications/app-s/services HTTP/1.1\r\nHost: kmep\r\n"+
		"Authorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 2000\r\n\r\n{", token)
	if err != nil {
		c.Close()
		return nil, err
	}
	return &slowConn{c: c, start: time.Now()}, nil
}

// trickle sends a byte a second until the server answers, then records
// the answer and whether the connection was closed after it.
func (s *slowConn) trickle(wait time.Duration) {
	defer s.c.Close()
	stop := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if _, err := s.c.Write([]byte(" ")); err != nil {
					return
				}
			}
		}
	}()
	defer close(stop)
	_ = s.c.SetReadDeadline(time.Now().Add(wait))
	br := bufio.NewReader(s.c)
	res, err := http.ReadResponse(br, nil)
	s.elapsed = time.Since(s.start)
	if err != nil {
		s.closed = true // closed (or timed out: then status stays 0)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			s.closed = false
		}
		return
	}
	s.status = res.StatusCode
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	_, err = br.ReadByte()
	s.closed = err != nil
}

// latencies runs n discovery requests one after the other and returns
// their durations, sorted.
func latencies(t *testing.T, c *http.Client, base, token string, n int) []time.Duration {
	t.Helper()
	out := make([]time.Duration, 0, n)
	for range n {
		req, _ := http.NewRequest("GET", base+"/mep/mec_service_mgmt/v1/services?ser_name=slow-target", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		start := time.Now()
		res, err := c.Do(req)
		if err != nil {
			t.Fatalf("discovery: %v", err)
		}
		var b strings.Builder
		_, _ = bufio.NewReader(res.Body).WriteTo(&b)
		res.Body.Close()
		out = append(out, time.Since(start))
		if res.StatusCode != 200 || !strings.Contains(b.String(), "slow-target") {
			t.Fatalf("discovery: %d %s", res.StatusCode, b.String())
		}
	}
	slices.Sort(out)
	return out
}

func pct(d []time.Duration, p float64) time.Duration {
	return d[min(len(d)-1, int(float64(len(d))*p))].Round(10 * time.Microsecond)
}

// TestSlowBodiesDoNotHoldTheAllInOne: 200 clients that send a registration
// body at 1 byte/s get a 408 and a closed connection after the default
// body bound, register nothing, and discovery answers beside them as it
// does without them (the latencies are logged, not asserted: a benchmark
// figure, see the README).
func TestSlowBodiesDoNotHoldTheAllInOne(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the 10 s default body bound")
	}
	const slow, probes = 200, 400
	r := testenv.NewRedis(t, testenv.RedisOptions{})
	base, logs := platform(t, allinone.Config{RedisURL: r.URL()})
	c := client{t, base}
	c.provision("app-s", "AKSLOW", "secret-key-slow")
	tok := c.token("AKSLOW", "secret-key-slow")
	res, b := c.do("POST", "/mep/mec_service_mgmt/v1/applications/app-s/services", tok, strings.NewReplacer("%s", "slow-target", `"livenessInterval":10`, `"livenessInterval":0`).Replace(egService),
		"Content-Type", "application/json")
	c.expect(res, b, http.StatusCreated)

	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	latencies(t, hc, base, tok, 50) // warm up
	before := latencies(t, hc, base, tok, probes)

	addr := strings.TrimPrefix(base, "http://")
	conns := make([]*slowConn, 0, slow)
	for range slow {
		s, err := openSlow(addr, tok)
		if err != nil {
			t.Fatalf("slow client %d: %v", len(conns), err)
		}
		conns = append(conns, s)
	}
	var wg sync.WaitGroup
	for _, s := range conns {
		wg.Go(func() { s.trickle(60 * time.Second) })
	}
	time.Sleep(time.Second) // every handler is now blocked in its body read
	during := latencies(t, hc, base, tok, probes)
	duringAt := time.Since(conns[0].start)
	wg.Wait()

	var worst, first time.Duration
	first = time.Hour
	for i, s := range conns {
		if s.status != http.StatusRequestTimeout || !s.closed {
			t.Fatalf("slow client %d: status %d closed %v after %v, want 408 and a closed connection\n%s", i, s.status, s.closed, s.elapsed, logs.String())
		}
		worst, first = max(worst, s.elapsed), min(first, s.elapsed)
	}
	if worst > 3*server.DefaultBodyTimeout {
		t.Errorf("the last slow client was answered after %v: not bounded by the body timeout", worst)
	}
	// Nothing the slow clients sent was registered.
	res, b = c.do("GET", "/mep/mec_service_mgmt/v1/applications/app-s/services", tok, "")
	c.expect(res, b, http.StatusOK)
	if n := strings.Count(string(b), `"serInstanceId"`); n != 1 {
		t.Fatalf("app-s has %d services after the slow clients, want 1: %s", n, b)
	}
	t.Logf("%d slow-body clients (1 byte/s): 408 + close after %v..%v (default body bound %v)",
		slow, first.Round(time.Millisecond), worst.Round(time.Millisecond), server.DefaultBodyTimeout)
	t.Logf("discovery latency, %d sequential requests: without slow clients p50 %v p99 %v max %v; with %d slow clients open (%v in) p50 %v p99 %v max %v",
		probes, pct(before, .5), pct(before, .99), pct(before, 1), slow, duringAt.Round(time.Millisecond), pct(during, .5), pct(during, .99), pct(during, 1))
}
