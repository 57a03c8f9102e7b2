package callback_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kmep-io/kmep/store/kit/callback"
)

// sink is a real HTTP server on loopback counting the notifications it gets.
type sink struct {
	*httptest.Server
	hits atomic.Int32
	body atomic.Value // string: the last request body
}

func newSink(t *testing.T) *sink {
	t.Helper()
	s := &sink{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		b, _ := io.ReadAll(r.Body)
		s.body.Store(string(b))
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(s.Close)
	return s
}

// port returns the sink's TCP port.
func (s *sink) port(t *testing.T) string {
	t.Helper()
	u, err := url.Parse(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Port()
}

func newPolicy(t *testing.T, allow string, r callback.Resolver) *callback.Policy {
	t.Helper()
	a, err := callback.ParseAllowList(allow)
	if err != nil {
		t.Fatal(err)
	}
	p, err := callback.New(callback.Options{Allow: a, Resolver: r})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func post(ctx context.Context, c *http.Client, u string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(`{"notificationType":"Test"}`))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp, nil
}

func TestClientTransport(t *testing.T) {
	tests := []struct {
		name    string
		timeout time.Duration
		want    time.Duration
	}{
		{"default timeout", 0, callback.DefaultTimeout},
		{"custom timeout", 2 * time.Second, 2 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := callback.New(callback.Options{Timeout: tc.timeout})
			if err != nil {
				t.Fatal(err)
			}
			c := p.Client()
			tr, ok := c.Transport.(*http.Transport)
			if !ok {
				t.Fatalf("Transport is %T, want *http.Transport", c.Transport)
			}
			if tr.Proxy != nil {
				t.Error("Transport.Proxy is set: proxies from the environment must not be used")
			}
			if tr.DialContext == nil || tr.DialTLSContext != nil || tr.Dial != nil || tr.DialTLS != nil {
				t.Error("Transport must dial through the policy's DialContext only")
			}
			if tr.MaxIdleConnsPerHost != 16 {
				t.Errorf("MaxIdleConnsPerHost = %d, want 16", tr.MaxIdleConnsPerHost)
			}
			if tr.TLSHandshakeTimeout != 5*time.Second {
				t.Errorf("TLSHandshakeTimeout = %v, want 5s", tr.TLSHandshakeTimeout)
			}
			if tr.ResponseHeaderTimeout != tc.want || c.Timeout != tc.want {
				t.Errorf("ResponseHeaderTimeout = %v, Client.Timeout = %v, want %v", tr.ResponseHeaderTimeout, c.Timeout, tc.want)
			}
			if c.CheckRedirect == nil {
				t.Error("CheckRedirect is nil: redirects would be followed")
			}
			c2 := p.Client()
			if c2 == c || c2.Transport != c.Transport {
				t.Error("Client() must return distinct clients sharing one Transport (one connection pool)")
			}
		})
	}
}

// TestClientDial posts to a real server on 127.0.0.1 under several
// policies and resolvers.
func TestClientDial(t *testing.T) {
	s := newSink(t)
	port := s.port(t)
	tests := []struct {
		name  string
		allow string
		deny  string
		hosts map[string][]netip.Addr
		url   string
		want  error // nil: delivered
	}{
		{name: "loopback literal refused", url: s.URL, want: callback.ErrForbiddenAddress},
		// IPv6 forms of loopback: refused by the policy before any connect
		// (the error is the policy's, not the network's).
		{name: "IPv4-compatible loopback literal refused", url: "http://[::127.0.0.1]:" + port + "/", want: callback.ErrForbiddenAddress},
		{name: "NAT64 loopback literal refused", url: "http://[64:ff9b::127.0.0.1]:" + port + "/", want: callback.ErrForbiddenAddress},
		{name: "6to4 loopback literal refused", url: "http://[2002:7f00:1::1]:" + port + "/", want: callback.ErrForbiddenAddress},
		{name: "name to NAT64 local-use loopback refused",
			hosts: map[string][]netip.Addr{"cb.test": addrs("64:ff9b:1::7f00:1")},
			url:   "http://cb.test:" + port + "/", want: callback.ErrForbiddenAddress},
		// KMEP_CALLBACK_DENY at the address actually dialled.
		{name: "denied literal refused although allowed", allow: "127.0.0.0/8", deny: "127.0.0.1", url: s.URL, want: callback.ErrForbiddenAddress},
		{name: "name to a denied address refused although allowed by name", allow: "cb.test", deny: "127.0.0.0/8",
			hosts: map[string][]netip.Addr{"cb.test": addrs("127.0.0.1")},
			url:   "http://cb.test:" + port + "/", want: callback.ErrForbiddenAddress},
		{name: "denied address skipped, next one dialled", allow: "127.0.0.0/8", deny: "127.0.0.2",
			hosts: map[string][]netip.Addr{"cb.test": addrs("127.0.0.2 127.0.0.1")},
			url:   "http://cb.test:" + port + "/"},
		{name: "outside the deny list delivered", allow: "127.0.0.0/8", deny: "10.0.0.0/8", url: s.URL},
		{name: "loopback literal allowed by cidr", allow: "127.0.0.0/8", url: s.URL},
		{name: "mapped loopback literal refused", url: "http://[::ffff:127.0.0.1]:" + port + "/", want: callback.ErrForbiddenAddress},
		{name: "name to loopback refused",
			hosts: map[string][]netip.Addr{"cb.test": addrs("127.0.0.1")},
			url:   "http://cb.test:" + port + "/", want: callback.ErrForbiddenAddress},
		{name: "name to loopback allowed by cidr", allow: "127.0.0.0/8",
			hosts: map[string][]netip.Addr{"cb.test": addrs("127.0.0.1")},
			url:   "http://cb.test:" + port + "/"},
		{name: "name to loopback allowed by name", allow: "cb.test",
			hosts: map[string][]netip.Addr{"cb.test": addrs("127.0.0.1")},
			url:   "http://cb.test:" + port + "/"},
		{name: "name allowed by wildcard", allow: "*.mec.test",
			hosts: map[string][]netip.Addr{"app.mec.test": addrs("127.0.0.1")},
			url:   "http://app.mec.test:" + port + "/"},
		{name: "other name to loopback refused", allow: "cb.test",
			hosts: map[string][]netip.Addr{"other.test": addrs("127.0.0.1")},
			url:   "http://other.test:" + port + "/", want: callback.ErrForbiddenAddress},
		{name: "metadata name refused although its address is allowed", allow: "127.0.0.0/8",
			hosts: map[string][]netip.Addr{"metadata": addrs("127.0.0.1")},
			url:   "http://metadata:" + port + "/", want: callback.ErrForbiddenAddress},
		{name: "refused address skipped, next one dialled", allow: "127.0.0.1",
			hosts: map[string][]netip.Addr{"cb.test": addrs("127.0.0.2 127.0.0.1")},
			url:   "http://cb.test:" + port + "/"},
		{name: "unresolvable", url: "http://nowhere.test:" + port + "/", want: callback.ErrUnresolvable},
		{name: "no addresses", hosts: map[string][]netip.Addr{"empty.test": {}},
			url: "http://empty.test:" + port + "/", want: callback.ErrUnresolvable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			allow, err := callback.ParseAllowList(tc.allow)
			if err != nil {
				t.Fatal(err)
			}
			deny, err := callback.ParseDenyList(tc.deny)
			if err != nil {
				t.Fatal(err)
			}
			p, err := callback.New(callback.Options{Allow: allow, Deny: deny, Resolver: &fakeResolver{hosts: tc.hosts}})
			if err != nil {
				t.Fatal(err)
			}
			before := s.hits.Load()
			resp, err := post(context.Background(), p.Client(), tc.url)
			delivered := s.hits.Load() - before
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("POST %s: err = %v, want %v", tc.url, err, tc.want)
				}
				if delivered != 0 {
					t.Fatalf("server received %d requests, want 0", delivered)
				}
				return
			}
			if err != nil {
				t.Fatalf("POST %s: %v", tc.url, err)
			}
			if resp.StatusCode != http.StatusNoContent || delivered != 1 {
				t.Fatalf("status %d, %d requests delivered; want 204 and 1", resp.StatusCode, delivered)
			}
			if got := s.body.Load(); got != `{"notificationType":"Test"}` {
				t.Errorf("server got body %q", got)
			}
		})
	}
}

// TestClientDNSRebinding: the name resolves to a public address when the
// subscription is validated and to loopback when the notification is sent.
// The Client must refuse the dial.
func TestClientDNSRebinding(t *testing.T) {
	s := newSink(t)
	for _, tc := range []struct {
		name  string
		allow string
		want  error
	}{
		{name: "refused", want: callback.ErrForbiddenAddress},
		{name: "loopback allowed", allow: "127.0.0.0/8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var lookups atomic.Int32
			r := &fakeResolver{lookupFn: func(_ context.Context, host string) ([]netip.Addr, error) {
				if host != "rebind.test" {
					return nil, errNoSuchHost
				}
				if lookups.Add(1) == 1 {
					return addrs("93.184.215.14"), nil
				}
				return addrs("127.0.0.1"), nil
			}}
			p := newPolicy(t, tc.allow, r)
			u := "http://rebind.test:" + s.port(t) + "/notify"
			if err := p.Validate(context.Background(), u); err != nil {
				t.Fatalf("Validate(%q) = %v, want nil (public at subscription time)", u, err)
			}
			before := s.hits.Load()
			_, err := post(context.Background(), p.Client(), u)
			if lookups.Load() < 2 {
				t.Fatalf("the Client did not resolve the name again (%d lookups)", lookups.Load())
			}
			delivered := s.hits.Load() - before
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("POST after rebinding: err = %v, want %v", err, tc.want)
				}
				var opErr *net.OpError
				if !errors.As(err, &opErr) {
					t.Errorf("err = %v, want a *net.OpError from the dialer's control hook", err)
				}
				if delivered != 0 {
					t.Fatalf("server received %d requests, want 0", delivered)
				}
				return
			}
			if err != nil || delivered != 1 {
				t.Fatalf("POST: err = %v, delivered %d; want nil and 1", err, delivered)
			}
		})
	}
}

func TestClientDoesNotFollowRedirects(t *testing.T) {
	var followed atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/cb", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	})
	mux.HandleFunc("/elsewhere", func(w http.ResponseWriter, r *http.Request) {
		followed.Add(1)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	p := newPolicy(t, "127.0.0.0/8", nil)
	resp, err := post(context.Background(), p.Client(), srv.URL+"/cb")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusFound {
		t.Errorf("status = %d, want 302", resp.StatusCode)
	}
	if loc := resp.Header.Get("Location"); loc != "/elsewhere" {
		t.Errorf("Location = %q, want /elsewhere", loc)
	}
	if n := followed.Load(); n != 0 {
		t.Errorf("redirect followed %d times", n)
	}
}

func TestClientReusesConnections(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)

	p := newPolicy(t, "127.0.0.1", nil)
	for i := range 5 {
		if _, err := post(context.Background(), p.Client(), srv.URL); err != nil {
			t.Fatalf("POST %d: %v", i, err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("5 sequential POSTs opened %d connections, want 1", n)
	}
}

func TestClientTimesOut(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })

	allow, err := callback.ParseAllowList("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	p, err := callback.New(callback.Options{Allow: allow, Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_, err = post(context.Background(), p.Client(), srv.URL)
	var netErr net.Error
	if !errors.As(err, &netErr) || !netErr.Timeout() {
		t.Fatalf("POST to a stalled server: err = %v, want a timeout", err)
	}
}
