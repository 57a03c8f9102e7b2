package callback

import (
	"errors"
	"testing"
)

// TestCheckDial drives the dialer's control hook directly with the
// addresses a connect would use.
func TestCheckDial(t *testing.T) {
	allow, err := ParseAllowList("allowed.test")
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(Options{Allow: allow})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		host, address string
		refused       bool
	}{
		{"", "127.0.0.1:80", true},
		{"", "[::1]:443", true},
		{"", "[::ffff:127.0.0.1]:80", true},
		{"", "169.254.169.254:80", true},
		{"", "[fe80::1%eth0]:80", true},
		{"public.test", "127.0.0.1:8080", true},
		{"allowed.test", "127.0.0.1:8080", false},
		{"", "10.0.0.1:80", false},
		{"public.test", "93.184.215.14:443", false},
		{"", "not-an-address", true},
	}
	for _, tc := range tests {
		t.Run(tc.host+"/"+tc.address, func(t *testing.T) {
			err := p.checkDial(tc.host, tc.address)
			if tc.refused != errors.Is(err, ErrForbiddenAddress) || (!tc.refused && err != nil) {
				t.Errorf("checkDial(%q, %q) = %v, refused want %v", tc.host, tc.address, err, tc.refused)
			}
		})
	}
}

func TestLooksLikeIPv4(t *testing.T) {
	tests := map[string]bool{
		"127.1":        true,
		"2130706433":   true,
		"0x7f000001":   true,
		"0x7f.0.0.1":   true,
		"0177.0.0.1":   true,
		"1.2.3.4":      true,
		"0x":           true,
		"1.2.3.4.5":    false,
		"example.com":  false,
		"0xg":          false,
		"123.example":  false,
		"deadbeef":     false,
		"a1.2.3.4":     false,
		"app-1.mec":    false,
		"10-0-0-1.svc": false,
	}
	for name, want := range tests {
		if got := looksLikeIPv4(name); got != want {
			t.Errorf("looksLikeIPv4(%q) = %v, want %v", name, got, want)
		}
	}
}
