package token

import (
	"net/http/httptest"
	"testing"
)

func TestSource(t *testing.T) {
	trusted, err := ParseTrustedProxies("127.0.0.0/8, ::1, 10.1.0.0/16")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, remote string
		xff          []string
		trusted      bool
		want         string
	}{
		{name: "IPv4 peer", remote: "192.0.2.7:4000", want: "192.0.2.7"},
		{name: "IPv6 peer counts by /64", remote: "[2001:db8:1:2:3:4:5:6]:4000", want: "2001:db8:1:2::/64"},
		{name: "IPv4-mapped peer", remote: "[::ffff:192.0.2.7]:4000", want: "192.0.2.7"},
		{name: "untrusted peer's X-Forwarded-For is ignored", remote: "192.0.2.7:4000", xff: []string{"198.51.100.1"}, trusted: true, want: "192.0.2.7"},
		{name: "no proxies trusted", remote: "127.0.0.1:4000", xff: []string{"198.51.100.1"}, want: "127.0.0.1"},
		{name: "trusted proxy", remote: "127.0.0.1:4000", xff: []string{"198.51.100.1"}, trusted: true, want: "198.51.100.1"},
		{name: "chain of proxies", remote: "127.0.0.1:4000", xff: []string{"203.0.113.9, 198.51.100.1, 10.1.2.3"}, trusted: true, want: "198.51.100.1"},
		{name: "several headers", remote: "[::1]:4000", xff: []string{"203.0.113.9", "198.51.100.1", "10.1.2.3"}, trusted: true, want: "198.51.100.1"},
		{name: "all trusted: the leftmost", remote: "127.0.0.1:4000", xff: []string{"10.1.0.5, 10.1.2.3"}, trusted: true, want: "10.1.0.5"},
		{name: "malformed entry stops the walk", remote: "127.0.0.1:4000", xff: []string{"198.51.100.1, junk, 10.1.2.3"}, trusted: true, want: "10.1.2.3"},
		{name: "trusted proxy without X-Forwarded-For", remote: "127.0.0.1:4000", trusted: true, want: "127.0.0.1"},
		{name: "unparsable peer", remote: "pipe", want: "unknown"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", TokenPath, nil)
			r.RemoteAddr = tc.remote
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			tp := trusted
			if !tc.trusted {
				tp = nil
			}
			if got := source(r, tp); got != tc.want {
				t.Errorf("source = %q, want %q", got, tc.want)
			}
		})
	}
	if _, err := ParseTrustedProxies("10.0.0.0/8,nope"); err == nil {
		t.Error("a malformed entry was accepted")
	}
	if p, err := ParseTrustedProxies(""); err != nil || p != nil {
		t.Errorf("empty list: %v %v", p, err)
	}
}
