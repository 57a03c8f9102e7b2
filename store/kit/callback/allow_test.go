package callback_test

import (
	"net/netip"
	"testing"

	"github.com/kmep-io/kmep/store/kit/callback"
)

func TestParseAllowList(t *testing.T) {
	good := []struct {
		in, want string
	}{
		{"", ""},
		{" , ,\t\n", ""},
		{"127.0.0.0/8", "127.0.0.0/8"},
		{"10.1.2.3/8", "10.0.0.0/8"},
		{"127.0.0.1", "127.0.0.1/32"},
		{"::1", "::1/128"},
		{"::ffff:127.0.0.1", "127.0.0.1/32"},
		{"::ffff:127.0.0.0/104", "127.0.0.0/8"},
		{"fd00::/8", "fd00::/8"},
		{"LOCALHOST.", "localhost"},
		{"*.Dev.Test", "*.dev.test"},
		{"127.0.0.0/8, ::1 localhost\t*.dev.test,,my_svc", "127.0.0.0/8,::1/128,localhost,my_svc,*.dev.test"},
	}
	for _, tc := range good {
		t.Run("good/"+tc.in, func(t *testing.T) {
			a, err := callback.ParseAllowList(tc.in)
			if err != nil {
				t.Fatalf("ParseAllowList(%q): %v", tc.in, err)
			}
			if got := a.String(); got != tc.want {
				t.Errorf("ParseAllowList(%q).String() = %q, want %q", tc.in, got, tc.want)
			}
		})
	}

	bad := []string{
		"127.0.0.0/33",
		"10.0.0.0/x",
		"fe80::/10%eth0",
		"fe80::1%eth0",
		"300.1.1.1",
		"127.1",
		"0x7f000001",
		"*",
		"*.",
		"*.-bad",
		"-bad.example",
		"bad-.example",
		"a..b",
		"http://localhost",
		"[::1]",
		"exämple.com",
		"localhost, 127.0.0.1/40",
	}
	for _, in := range bad {
		t.Run("bad/"+in, func(t *testing.T) {
			if a, err := callback.ParseAllowList(in); err == nil {
				t.Fatalf("ParseAllowList(%q) = %q, want error", in, a)
			}
		})
	}
}

func TestAllowListMatching(t *testing.T) {
	allow, err := callback.ParseAllowList("127.0.0.0/8 localhost *.dev.test ::ffff:169.254.169.254")
	if err != nil {
		t.Fatal(err)
	}
	p, err := callback.New(callback.Options{Allow: allow})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		ip, host string
		want     bool
	}{
		{"127.0.0.1", "", true},
		{"127.255.255.254", "", true},
		{"::ffff:127.0.0.1", "", true},
		{"::1", "", false},
		{"169.254.169.254", "", true},
		{"169.254.169.253", "", false},
		// Host names allowed by name pass whatever the address.
		{"::1", "localhost", true},
		{"::1", "LOCALHOST.", true},
		{"::1", "a.localhost", false},
		{"::1", "api.dev.test", true},
		{"::1", "a.b.dev.test", true},
		{"::1", "dev.test", false},
		{"::1", "xdev.test", false},
		{"", "api.dev.test", true},
		{"", "other.test", false},
	}
	for _, tc := range tests {
		t.Run(tc.ip+"/"+tc.host, func(t *testing.T) {
			var ip netip.Addr
			if tc.ip != "" {
				ip = netip.MustParseAddr(tc.ip)
			}
			if got := p.Permitted(ip, tc.host); got != tc.want {
				t.Errorf("Permitted(%q, %q) = %v, want %v", tc.ip, tc.host, got, tc.want)
			}
		})
	}
}

func TestParseDenyList(t *testing.T) {
	good := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{" , ,\t\n", nil},
		{"10.0.0.0/8", []string{"10.0.0.0/8"}},
		{"10.1.2.3/8", []string{"10.0.0.0/8"}},
		{"192.168.1.1", []string{"192.168.1.1/32"}},
		{"fd00::/8, ::ffff:172.16.0.0/108 2001:db8::1", []string{"fd00::/8", "172.16.0.0/12", "2001:db8::1/128"}},
	}
	for _, tc := range good {
		t.Run("good/"+tc.in, func(t *testing.T) {
			got, err := callback.ParseDenyList(tc.in)
			if err != nil {
				t.Fatalf("ParseDenyList(%q): %v", tc.in, err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("ParseDenyList(%q) = %v, want %v", tc.in, got, tc.want)
			}
			for i := range got {
				if got[i].String() != tc.want[i] {
					t.Errorf("ParseDenyList(%q)[%d] = %v, want %s", tc.in, i, got[i], tc.want[i])
				}
			}
		})
	}
	for _, in := range []string{"10.0.0.0/33", "10.0.0.0/x", "fe80::1%eth0", "300.1.1.1", "internal.example", "*.svc", "10.1", "10.0.0.0/8, localhost"} {
		t.Run("bad/"+in, func(t *testing.T) {
			if got, err := callback.ParseDenyList(in); err == nil {
				t.Fatalf("ParseDenyList(%q) = %v, want error", in, got)
			}
		})
	}
}
