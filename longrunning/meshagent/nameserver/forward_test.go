package nameserver_test

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/longrunning/meshagent/nameserver"
	"github.com/kmep-io/kmep/store"
)

// Names outside the rules and the zone go to a real upstream (CoreDNS with
// the hosts plugin), are cached by TTL, and turn into SERVFAIL when the
// upstream is gone and nothing is cached.
func TestForwarding(t *testing.T) {
	hosts := []string{"10.1.2.3 svc.example.test", "fd00::3 svc.example.test"}
	for i := range 80 {
		hosts = append(hosts, fmt.Sprintf("10.2.0.%d many.example.test", i+1))
	}
	up := testenv.NewCoreDNS(t, testenv.CoreDNSOptions{Hosts: hosts, CPU: -1})
	addr := start(t, newStore(t), nameserver.Config{Upstreams: []string{up.Addr}})

	r := query(t, addr, "udp", "svc.example.test.", dns.TypeA, 0)
	if got := ips(r.Answer); r.Rcode != dns.RcodeSuccess || !slices.Equal(got, []string{"10.1.2.3"}) || r.Authoritative {
		t.Fatalf("forwarded A: %v", r)
	}
	r = query(t, addr, "udp", "svc.example.test.", dns.TypeAAAA, 1232)
	if got := ips(r.Answer); !slices.Equal(got, []string{"fd00::3"}) || r.IsEdns0() == nil {
		t.Fatalf("forwarded AAAA with EDNS: %v", r)
	}
	// CoreDNS's hosts plugin, with nothing after it, answers SERVFAIL for a
	// name it does not hold: passed on as SERVFAIL, not cached.
	if r := query(t, addr, "udp", "absent.example.test.", dns.TypeA, 0); r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("upstream SERVFAIL passed on as %s", dns.RcodeToString[r.Rcode])
	}
	// A big upstream answer is truncated for a plain UDP client and whole over TCP.
	if r := query(t, addr, "udp", "many.example.test.", dns.TypeA, 0); !r.Truncated || len(r.Answer) == 80 {
		t.Fatalf("80 records over plain UDP: TC=%v, %d answers", r.Truncated, len(r.Answer))
	}
	if r := query(t, addr, "tcp", "many.example.test.", dns.TypeA, 0); r.Truncated || len(r.Answer) != 80 {
		t.Fatalf("80 records over TCP: TC=%v, %d answers", r.Truncated, len(r.Answer))
	}

	up.Close()
	r = query(t, addr, "udp", "svc.example.test.", dns.TypeA, 0)
	if got := ips(r.Answer); !slices.Equal(got, []string{"10.1.2.3"}) {
		t.Fatalf("cached answer after the upstream went away: %v", r)
	}
	if ttl := r.Answer[0].Header().Ttl; ttl == 0 || ttl > 3600 {
		t.Fatalf("cached TTL %d", ttl)
	}
	if r := query(t, addr, "udp", "other.example.test.", dns.TypeA, 0); r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("uncached name, upstream down: %s", dns.RcodeToString[r.Rcode])
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	st := &store.Store{}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for name, cfg := range map[string]nameserver.Config{
		"zone":     {Zone: "bad zone"},
		"upstream": {Upstreams: []string{"8.8.8.8"}},
		"block":    {Block: -1},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := nameserver.New(cfg, nameserver.Deps{Store: st, Log: quiet}); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	if _, err := nameserver.New(nameserver.Config{}, nameserver.Deps{}); err == nil {
		t.Fatal("accepted a missing store")
	}
}

// FuzzAnswer feeds arbitrary packets to the handler: it never panics,
// stays silent only for packets without a header or that are responses,
// answers every other packet with a parseable message carrying the query's
// id, and FORMERR when the packet does not parse.
func FuzzAnswer(f *testing.F) {
	s, err := nameserver.New(nameserver.Config{Upstreams: []string{"127.0.0.1:1"}, UpstreamTimeout: 20 * time.Millisecond},
		nameserver.Deps{Store: &store.Store{}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		f.Fatal(err)
	}
	for _, q := range []struct {
		name  string
		qtype uint16
	}{{"a.mec.local.", dns.TypeA}, {"mec.local.", dns.TypeANY}, {"x.mec.local.", dns.TypeSRV}, {"mec.local.", dns.TypeAXFR}} {
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.qtype)
		m.SetEdns0(4096, true)
		b, _ := m.Pack()
		f.Add(b, false)
		f.Add(b[:len(b)-5], true)
	}
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1}, false) // a pointer loop
	f.Fuzz(func(t *testing.T, raw []byte, tcp bool) {
		out := s.Answer(raw, tcp)
		if out == nil {
			if len(raw) >= 12 && raw[2]&0x80 == 0 {
				t.Fatalf("no answer to a query with a header: %x", raw)
			}
			return
		}
		var resp dns.Msg
		if err := resp.Unpack(out); err != nil {
			t.Fatalf("answer does not parse: %v", err)
		}
		if !resp.Response || resp.Id != uint16(raw[0])<<8|uint16(raw[1]) {
			t.Fatalf("answer header %v", resp.MsgHdr)
		}
		var req dns.Msg
		if req.Unpack(raw) != nil && resp.Rcode != dns.RcodeFormatError && resp.Rcode != dns.RcodeNotImplemented {
			t.Fatalf("unparseable query answered %s", dns.RcodeToString[resp.Rcode])
		}
		if !tcp && len(out) > 1232 {
			t.Fatalf("UDP answer of %d bytes", len(out))
		}
	})
}
