package callback_test

import (
	"context"
	"errors"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kmep-io/kmep/store/kit/callback"
)

func testResolver() *fakeResolver {
	return &fakeResolver{hosts: map[string][]netip.Addr{
		"public.example":            addrs("93.184.215.14 2606:2800:220:1::1"),
		"private.example":           addrs("10.1.2.3"),
		"app.mec.svc.cluster.local": addrs("10.96.0.10"),
		"ula.example":               addrs("fd12:3456::7"),
		"loop.example":              addrs("127.0.0.1"),
		"v6loop.example":            addrs("::1"),
		"mapped.example":            addrs("::ffff:127.0.0.1"),
		"meta.example":              addrs("169.254.169.254"),
		"mixed.example":             addrs("10.0.0.1 127.0.0.1"),
		"mixed6.example":            addrs("93.184.215.14 fe80::1"),
		"broadcast.example":         addrs("255.255.255.255"),
		"localhost":                 addrs("127.0.0.1 ::1"),
		"metadata.google.internal":  addrs("93.184.215.14"),
		"metadata":                  addrs("93.184.215.14"),
		"instance-data":             addrs("93.184.215.14"),
		"empty.example":             {},
		"nat64loop.example":         addrs("64:ff9b::7f00:1"),
		"sixtofour.example":         addrs("93.184.215.14 2002:7f00:1::1"),
		"nat64private.example":      addrs("64:ff9b::a01:203"),
	}}
}

func TestValidate(t *testing.T) {
	long := "http://public.example/" + strings.Repeat("a", callback.MaxURLLength)
	tests := []struct {
		name  string
		url   string
		allow string
		deny  string
		own   string
		want  error // nil, or the sentinel the *Error must wrap
	}{
		// Accepted.
		{name: "public https", url: "https://public.example/notify"},
		{name: "public http with port", url: "http://public.example:8080/notify?x=1#frag"},
		{name: "name any case, trailing dot", url: "http://PUBLIC.Example./cb"},
		{name: "private name", url: "http://private.example/cb"},
		{name: "cluster service", url: "http://app.mec.svc.cluster.local:8080/cb"},
		{name: "ula name", url: "http://ula.example/cb"},
		{name: "private 10.x literal", url: "http://10.1.2.3:8080/cb"},
		{name: "private 172.16 literal", url: "http://172.16.0.1/cb"},
		{name: "private 192.168 literal", url: "https://192.168.1.10/cb"},
		{name: "public literal", url: "http://8.8.8.8/cb"},
		{name: "v6 literal in brackets", url: "http://[2001:db8::1]:8443/cb"},
		{name: "ula literal in brackets", url: "http://[fd12::1]/cb"},
		{name: "port 65535", url: "http://public.example:65535/"},
		{name: "port 1", url: "http://public.example:1/"},
		{name: "empty port", url: "http://public.example:/cb"},
		{name: "at max length", url: "http://public.example/" + strings.Repeat("a", callback.MaxURLLength-len("http://public.example/"))},

		// Malformed.
		{name: "empty", url: "", want: callback.ErrInvalidURL},
		{name: "ftp", url: "ftp://public.example/cb", want: callback.ErrInvalidURL},
		{name: "javascript", url: "javascript:alert(1)", want: callback.ErrInvalidURL},
		{name: "file", url: "file:///etc/passwd", want: callback.ErrInvalidURL},
		{name: "relative path", url: "/notify", want: callback.ErrInvalidURL},
		{name: "scheme-relative", url: "//public.example/notify", want: callback.ErrInvalidURL},
		{name: "opaque http", url: "http:public.example", want: callback.ErrInvalidURL},
		{name: "no host", url: "http:///cb", want: callback.ErrInvalidURL},
		{name: "no host, single slash", url: "http:/cb", want: callback.ErrInvalidURL},
		{name: "port only", url: "http://:8080/cb", want: callback.ErrInvalidURL},
		{name: "userinfo", url: "http://user:pass@public.example/cb", want: callback.ErrInvalidURL},
		{name: "user only", url: "http://user@public.example/cb", want: callback.ErrInvalidURL},
		{name: "empty userinfo", url: "http://@public.example/cb", want: callback.ErrInvalidURL},
		{name: "too long", url: long, want: callback.ErrInvalidURL},
		{name: "port 0", url: "http://public.example:0/", want: callback.ErrInvalidURL},
		{name: "port 65536", url: "http://public.example:65536/", want: callback.ErrInvalidURL},
		{name: "port overflow", url: "http://public.example:99999999999999999999999/", want: callback.ErrInvalidURL},
		{name: "port not a number", url: "http://public.example:http/", want: callback.ErrInvalidURL},
		{name: "space in host", url: "http://public example/", want: callback.ErrInvalidURL},
		{name: "control character", url: "http://public.example/\x00", want: callback.ErrInvalidURL},
		{name: "non-ascii host", url: "http://exämple.com/", want: callback.ErrInvalidURL},
		{name: "bad label", url: "http://-bad.example/", want: callback.ErrInvalidURL},
		{name: "empty label", url: "http://a..example/", want: callback.ErrInvalidURL},
		{name: "long label", url: "http://" + strings.Repeat("a", 64) + ".example/", want: callback.ErrInvalidURL},
		{name: "not v6 in brackets", url: "http://[public.example]/", want: callback.ErrInvalidURL},
		{name: "zoned v6 literal", url: "http://[fe80::1%25eth0]/", want: callback.ErrInvalidURL},
		{name: "short v4 form", url: "http://127.1/", want: callback.ErrInvalidURL},
		{name: "decimal v4 form", url: "http://2130706433/", want: callback.ErrInvalidURL},
		{name: "hex v4 form", url: "http://0x7f000001/", want: callback.ErrInvalidURL},
		{name: "octal v4 form", url: "http://0177.0.0.1/", want: callback.ErrInvalidURL},

		// Refused addresses and names.
		{name: "loopback v4", url: "http://127.0.0.1/cb", want: callback.ErrForbiddenAddress},
		{name: "loopback v4 range", url: "http://127.1.2.3:9000/cb", want: callback.ErrForbiddenAddress},
		{name: "loopback v6", url: "http://[::1]:8080/cb", want: callback.ErrForbiddenAddress},
		{name: "mapped loopback", url: "http://[::ffff:127.0.0.1]/cb", want: callback.ErrForbiddenAddress},
		{name: "mapped loopback hex", url: "http://[::ffff:7f00:1]/cb", want: callback.ErrForbiddenAddress},
		{name: "unspecified v4", url: "http://0.0.0.0:8080/", want: callback.ErrForbiddenAddress},
		{name: "unspecified v6", url: "http://[::]/", want: callback.ErrForbiddenAddress},
		{name: "metadata v4", url: "http://169.254.169.254/latest/meta-data/", want: callback.ErrForbiddenAddress},
		{name: "mapped metadata", url: "http://[::ffff:169.254.169.254]/", want: callback.ErrForbiddenAddress},
		{name: "link-local v6", url: "http://[fe80::1]/", want: callback.ErrForbiddenAddress},
		{name: "aws metadata v6", url: "http://[fd00:ec2::254]/", want: callback.ErrForbiddenAddress},
		{name: "alibaba metadata", url: "http://100.100.100.200/", want: callback.ErrForbiddenAddress},
		{name: "multicast", url: "http://224.0.0.251/", want: callback.ErrForbiddenAddress},
		{name: "multicast v6", url: "http://[ff02::1]/", want: callback.ErrForbiddenAddress},
		{name: "broadcast", url: "http://255.255.255.255/", want: callback.ErrForbiddenAddress},
		{name: "gcp metadata name", url: "http://metadata.google.internal/computeMetadata/v1/", want: callback.ErrForbiddenAddress},
		{name: "gcp metadata name any case", url: "http://METADATA.Google.Internal./", want: callback.ErrForbiddenAddress},
		{name: "metadata short name", url: "http://metadata/", want: callback.ErrForbiddenAddress},
		{name: "aws instance-data", url: "http://instance-data/latest/", want: callback.ErrForbiddenAddress},
		{name: "name to loopback", url: "http://loop.example/cb", want: callback.ErrForbiddenAddress},
		{name: "name to v6 loopback", url: "http://v6loop.example/cb", want: callback.ErrForbiddenAddress},
		{name: "name to mapped loopback", url: "http://mapped.example/cb", want: callback.ErrForbiddenAddress},
		{name: "name to metadata", url: "http://meta.example/cb", want: callback.ErrForbiddenAddress},
		{name: "one bad address of two", url: "http://mixed.example/cb", want: callback.ErrForbiddenAddress},
		{name: "one bad v6 address of two", url: "http://mixed6.example/cb", want: callback.ErrForbiddenAddress},
		{name: "name to broadcast", url: "http://broadcast.example/cb", want: callback.ErrForbiddenAddress},
		{name: "localhost", url: "http://localhost:8080/cb", want: callback.ErrForbiddenAddress},

		// Resolution failures.
		{name: "unknown name", url: "http://nowhere.example/cb", want: callback.ErrUnresolvable},
		{name: "name without addresses", url: "http://empty.example/cb", want: callback.ErrUnresolvable},

		// The platform's own addresses.
		{name: "own literal", url: "http://10.1.2.3/cb", own: "10.1.2.3/32", want: callback.ErrForbiddenAddress},
		{name: "own by name", url: "http://private.example/cb", own: "10.1.2.3/32", want: callback.ErrForbiddenAddress},
		{name: "own v6", url: "http://ula.example/cb", own: "fd12:3456::/64", want: callback.ErrForbiddenAddress},
		{name: "not own", url: "http://10.1.2.4/cb", own: "10.1.2.3/32"},

		// The allow list.
		{name: "allowed cidr, loopback literal", url: "http://127.0.0.1:8080/cb", allow: "127.0.0.0/8"},
		{name: "allowed cidr, mapped literal", url: "http://[::ffff:127.0.0.1]:8080/cb", allow: "127.0.0.0/8"},
		{name: "allowed cidr, name to loopback", url: "http://loop.example/cb", allow: "127.0.0.0/8"},
		{name: "allowed cidr, v6 loopback still refused", url: "http://[::1]/cb", allow: "127.0.0.0/8", want: callback.ErrForbiddenAddress},
		{name: "allowed cidr, localhost needs ::1 too", url: "http://localhost/cb", allow: "127.0.0.0/8", want: callback.ErrForbiddenAddress},
		{name: "allowed cidrs, localhost", url: "http://localhost/cb", allow: "127.0.0.0/8 ::1"},
		{name: "allowed name, localhost", url: "http://localhost:8080/cb", allow: "localhost"},
		{name: "allowed name, any case", url: "http://LocalHost./cb", allow: "localhost"},
		{name: "allowed name, literal still refused", url: "http://127.0.0.1/cb", allow: "localhost", want: callback.ErrForbiddenAddress},
		{name: "allowed wildcard, no lookup", url: "http://api.dev.test/cb", allow: "*.dev.test"},
		{name: "allowed wildcard, not the apex", url: "http://dev.test/cb", allow: "*.dev.test", want: callback.ErrUnresolvable},
		{name: "allowed cidr keeps metadata name refused", url: "http://metadata/", allow: "0.0.0.0/0", want: callback.ErrForbiddenAddress},
		{name: "allowed metadata by name", url: "http://metadata/", allow: "metadata"},
		{name: "allowed metadata address", url: "http://169.254.169.254/", allow: "169.254.169.254"},
		{name: "allowed own address", url: "http://10.1.2.3/", allow: "10.1.2.3", own: "10.0.0.0/8"},

		// IPv6 forms that reach an IPv4 address are judged as that address.
		{name: "IPv4-compatible loopback", url: "http://[::127.0.0.1]/", want: callback.ErrForbiddenAddress},
		{name: "IPv4-compatible loopback in hex", url: "http://[::7f00:1]:8080/", want: callback.ErrForbiddenAddress},
		{name: "SIIT loopback", url: "http://[::ffff:0:7f00:1]/", want: callback.ErrForbiddenAddress},
		{name: "NAT64 loopback", url: "http://[64:ff9b::127.0.0.1]/", want: callback.ErrForbiddenAddress},
		{name: "NAT64 metadata", url: "http://[64:ff9b::169.254.169.254]/latest/meta-data/", want: callback.ErrForbiddenAddress},
		{name: "NAT64 local-use loopback", url: "http://[64:ff9b:1::7f00:1]/", want: callback.ErrForbiddenAddress},
		{name: "6to4 loopback", url: "http://[2002:7f00:1::1]/", want: callback.ErrForbiddenAddress},
		{name: "Teredo loopback client", url: "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/", want: callback.ErrForbiddenAddress},
		{name: "name to NAT64 loopback", url: "http://nat64loop.example/cb", want: callback.ErrForbiddenAddress},
		{name: "name to 6to4 loopback beside a public address", url: "http://sixtofour.example/cb", want: callback.ErrForbiddenAddress},
		{name: "NAT64 public", url: "http://[64:ff9b::93.184.215.14]/"},
		{name: "NAT64 loopback opened with the IPv4 range", url: "http://[64:ff9b::127.0.0.1]/", allow: "127.0.0.0/8"},

		// KMEP_CALLBACK_DENY.
		{name: "denied private literal", url: "http://10.1.2.3/cb", deny: "10.0.0.0/8", want: callback.ErrForbiddenAddress},
		{name: "denied private name", url: "http://private.example/cb", deny: "10.0.0.0/8", want: callback.ErrForbiddenAddress},
		{name: "denied through NAT64", url: "http://nat64private.example/cb", deny: "10.0.0.0/8", want: callback.ErrForbiddenAddress},
		{name: "denied v6 name", url: "http://ula.example/cb", deny: "fd00::/8", want: callback.ErrForbiddenAddress},
		{name: "outside the deny list", url: "http://app.mec.svc.cluster.local:8080/cb", deny: "10.0.0.0/16"},
		{name: "deny wins over an allowed cidr", url: "http://127.0.0.1/cb", allow: "127.0.0.0/8", deny: "127.0.0.1", want: callback.ErrForbiddenAddress},
		{name: "deny wins over an allowed name", url: "http://localhost/cb", allow: "localhost", deny: "127.0.0.0/8", want: callback.ErrForbiddenAddress},
		{name: "allowed name checked against the deny list", url: "http://localhost/cb", allow: "localhost", deny: "10.0.0.0/8"},
		{name: "allowed name must resolve with a deny list", url: "http://api.dev.test/cb", allow: "*.dev.test", deny: "10.0.0.0/8", want: callback.ErrUnresolvable},
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
			p, err := callback.New(callback.Options{
				Allow:    allow,
				Deny:     deny,
				OwnAddrs: prefixes(tc.own),
				Resolver: testResolver(),
			})
			if err != nil {
				t.Fatal(err)
			}
			err = p.Validate(context.Background(), tc.url)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Validate(%q) = %v, want nil", tc.url, err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Validate(%q) = %v, want error wrapping %v", tc.url, err, tc.want)
			}
			var ve *callback.Error
			if !errors.As(err, &ve) || ve.Reason == "" {
				t.Fatalf("Validate(%q) = %#v, want *callback.Error with a Reason", tc.url, err)
			}
			for _, other := range []error{callback.ErrInvalidURL, callback.ErrForbiddenAddress, callback.ErrUnresolvable} {
				if other != tc.want && errors.Is(err, other) {
					t.Errorf("Validate(%q) = %v also wraps %v", tc.url, err, other)
				}
			}
		})
	}
}

// TestValidateReasonHidesResolvedAddress checks that the client-facing
// reason for a refused name does not reveal what the platform's DNS answered,
// while the wrapped error (for the log) does.
func TestValidateReasonHidesResolvedAddress(t *testing.T) {
	p, err := callback.New(callback.Options{Resolver: testResolver()})
	if err != nil {
		t.Fatal(err)
	}
	err = p.Validate(context.Background(), "http://meta.example/cb")
	var ve *callback.Error
	if !errors.As(err, &ve) {
		t.Fatalf("Validate = %v, want *callback.Error", err)
	}
	if strings.Contains(ve.Reason, "169.254") {
		t.Errorf("Reason %q reveals the resolved address", ve.Reason)
	}
	if !strings.Contains(ve.Reason, "meta.example") {
		t.Errorf("Reason %q does not name the host", ve.Reason)
	}
	if !strings.Contains(err.Error(), "169.254.169.254") {
		t.Errorf("Error() %q lacks the resolved address for the log", err.Error())
	}
}

func TestValidateLookup(t *testing.T) {
	t.Run("resolver error is ErrUnresolvable and keeps the cause", func(t *testing.T) {
		r := &fakeResolver{err: context.DeadlineExceeded}
		p, err := callback.New(callback.Options{Resolver: r})
		if err != nil {
			t.Fatal(err)
		}
		err = p.Validate(context.Background(), "http://public.example/cb")
		if !errors.Is(err, callback.ErrUnresolvable) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Validate = %v, want ErrUnresolvable wrapping the cause", err)
		}
	})
	t.Run("lookup is bounded and uses the normalized name", func(t *testing.T) {
		var deadline time.Time
		r := &fakeResolver{lookupFn: func(ctx context.Context, host string) ([]netip.Addr, error) {
			deadline, _ = ctx.Deadline()
			return addrs("10.0.0.1"), nil
		}}
		p, err := callback.New(callback.Options{Resolver: r})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := p.Validate(context.Background(), "http://App.Example./cb"); err != nil {
			t.Fatal(err)
		}
		if deadline.IsZero() || deadline.After(start.Add(callback.DialTimeout+time.Second)) {
			t.Errorf("lookup deadline %v, want within %v of %v", deadline, callback.DialTimeout, start)
		}
		if got := r.lookups(); len(got) != 1 || got[0] != "ip app.example" {
			t.Errorf("lookups = %q, want [\"ip app.example\"]", got)
		}
	})
	t.Run("literals, refused names and allowed names are not looked up", func(t *testing.T) {
		r := testResolver()
		allow, err := callback.ParseAllowList("*.dev.test")
		if err != nil {
			t.Fatal(err)
		}
		p, err := callback.New(callback.Options{Resolver: r, Allow: allow})
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range []string{"http://10.0.0.1/", "http://[::1]/", "http://metadata/", "http://x.dev.test/"} {
			_ = p.Validate(context.Background(), u)
		}
		if got := r.lookups(); len(got) != 0 {
			t.Errorf("lookups = %q, want none", got)
		}
	})
}

// FuzzValidate checks that Validate never panics, always returns an *Error
// wrapping exactly one sentinel, and never accepts a URL that breaks the
// rules it promises.
func FuzzValidate(f *testing.F) {
	for _, s := range []string{
		"http://public.example/cb", "https://10.0.0.1:8443/x", "http://[::ffff:127.0.0.1]/",
		"http://127.1/", "http://metadata/", "javascript:alert(1)", "http://u@h/", "http://[fe80::1%25eth0]/",
		"http://h:0/", "", "//x", "http://0x7f.1/", "HTTP://LOCALHOST./",
	} {
		f.Add(s)
	}
	r := &fakeResolver{lookupFn: func(_ context.Context, host string) ([]netip.Addr, error) {
		switch {
		case strings.HasPrefix(host, "loop"):
			return addrs("127.0.0.1"), nil
		case strings.HasPrefix(host, "none"):
			return nil, errNoSuchHost
		}
		return addrs("93.184.215.14"), nil
	}}
	p, err := callback.New(callback.Options{Resolver: r})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		err := p.Validate(context.Background(), raw)
		if err != nil {
			var ve *callback.Error
			if !errors.As(err, &ve) || ve.Reason == "" {
				t.Fatalf("Validate(%q) = %v, not a *callback.Error with a Reason", raw, err)
			}
			n := 0
			for _, s := range []error{callback.ErrInvalidURL, callback.ErrForbiddenAddress, callback.ErrUnresolvable} {
				if errors.Is(err, s) {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("Validate(%q) = %v wraps %d sentinels, want 1", raw, err, n)
			}
			return
		}
		if len(raw) > callback.MaxURLLength {
			t.Fatalf("accepted %d-byte URL", len(raw))
		}
		u, perr := url.Parse(raw)
		if perr != nil || (u.Scheme != "http" && u.Scheme != "https") || u.User != nil || u.Hostname() == "" {
			t.Fatalf("accepted %q", raw)
		}
		host := u.Hostname()
		if ip, err := netip.ParseAddr(host); err == nil && !p.Permitted(ip, "") {
			t.Fatalf("accepted %q with refused address %s", raw, ip)
		}
		if strings.HasPrefix(strings.ToLower(host), "loop") {
			t.Fatalf("accepted %q, which resolves to loopback", raw)
		}
	})
}
