package nameserver_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/longrunning/meshagent/nameserver"
	"github.com/kmep-io/kmep/store"
)

var (
	srv      *testenv.Redis
	prefixes atomic.Int64
)

func TestMain(m *testing.M) { testenv.MainWithRedis(m, testenv.RedisOptions{}, &srv) }

func newStore(t testing.TB) *store.Store {
	t.Helper()
	st, err := store.New(store.Options{Client: srv.Client(t), Prefix: fmt.Sprintf("ns%d", prefixes.Add(1))})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// start runs a server over st on a free loopback port (UDP and TCP) and
// returns its address once it has loaded the store.
func start(t testing.TB, st *store.Store, cfg nameserver.Config) string {
	t.Helper()
	// UDP and TCP on one port: the TCP side of a free UDP port may be
	// taken by another test's socket, so try a few.
	var pc net.PacketConn
	var ln net.Listener
	for attempt := 0; ; attempt++ {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
		if attempt == 20 {
			t.Fatal(err)
		}
	}
	cfg.PacketConn, cfg.Listener = pc, ln
	if cfg.Upstreams == nil {
		cfg.Upstreams = []string{"127.0.0.1:1"} // nothing listens: forwarding fails at once
	}
	s, err := nameserver.New(cfg, nameserver.Deps{Store: st, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	for i := 0; !s.Synced(time.Minute); i++ {
		if i > 500 {
			t.Fatal("server did not load the store")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return pc.LocalAddr().String()
}

func dnsRule(id, name, typ, ip string, ttl *int64, state string) store.Rule {
	body := map[string]any{"dnsRuleId": id, "domainName": name, "ipAddressType": typ, "ipAddress": ip, "state": state}
	if ttl != nil {
		body["ttl"] = *ttl
	}
	b, _ := json.Marshal(body)
	return store.Rule{Kind: store.RuleDNS, ID: id, State: state, Body: b}
}

func service(id, name, state string, endpoint string) store.ServiceRecord {
	info := fmt.Sprintf(`{"serInstanceId":%q,"serName":%q,"version":"1","serializer":"JSON","transportInfo":{"id":"t","name":"REST","type":"REST_HTTP","protocol":"HTTP","version":"2","security":{},"endpoint":%s}}`,
		id, name, endpoint)
	return store.ServiceRecord{ID: id, AppInstanceID: "app-" + id, Name: name, State: state, Info: []byte(info)}
}

func query(t testing.TB, addr, network, name string, qtype uint16, edns uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if edns > 0 {
		m.SetEdns0(edns, false)
	}
	c := &dns.Client{Net: network, Timeout: 3 * time.Second, UDPSize: 65535}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("query %s %s over %s: %v", name, dns.TypeToString[qtype], network, err)
	}
	return r
}

func ips(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		switch v := rr.(type) {
		case *dns.A:
			out = append(out, v.A.String())
		case *dns.AAAA:
			out = append(out, v.AAAA.String())
		}
	}
	slices.Sort(out)
	return out
}

func ptr(v int64) *int64 { return &v }

func TestAnswersRulesAndServices(t *testing.T) {
	st := newStore(t)
	ctx := context.Background()
	_, err := st.CreateAppD(ctx, store.AppD{AppInstanceID: "app1", AppName: "a", DNS: []store.Rule{
		dnsRule("r1", "www.example.com", "IP_V4", "192.0.2.10", ptr(30), "ACTIVE"),
		dnsRule("r2", "v6.example.com.", "IP_V6", "2001:db8::7", nil, "ACTIVE"),
		dnsRule("r3", "off.example.com", "IP_V4", "192.0.2.11", nil, "INACTIVE"),
		dnsRule("r4", "app.mec.local", "IP_V4", "192.0.2.12", ptr(5), "ACTIVE"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []store.ServiceRecord{
		service("s1", "Location", "ACTIVE", `{"addresses":[{"host":"10.0.0.5","port":8080},{"host":"fd00::5","port":8081}]}`),
		service("s2", "location", "ACTIVE", `{"uris":["http://10.0.0.6:9090/loc/v2","https://10.0.0.7/x"]}`),
		service("s3", "rni", "INACTIVE", `{"addresses":[{"host":"10.0.0.8","port":80}]}`),
	} {
		if _, _, err := st.CreateService(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	addr := start(t, st, nameserver.Config{})

	for _, tc := range []struct {
		name  string
		qtype uint16
		rcode int
		want  []string
		ttl   uint32
	}{
		{"www.example.com.", dns.TypeA, dns.RcodeSuccess, []string{"192.0.2.10"}, 30},
		{"WWW.Example.COM.", dns.TypeA, dns.RcodeSuccess, []string{"192.0.2.10"}, 30},
		{"v6.example.com.", dns.TypeAAAA, dns.RcodeSuccess, []string{"2001:db8::7"}, 60},
		{"v6.example.com.", dns.TypeA, dns.RcodeSuccess, nil, 0},        // NODATA
		{"off.example.com.", dns.TypeA, dns.RcodeServerFailure, nil, 0}, // not a rule: forwarded, upstream down
		{"app.mec.local.", dns.TypeA, dns.RcodeSuccess, []string{"192.0.2.12"}, 5},
		{"location.mec.local.", dns.TypeA, dns.RcodeSuccess, []string{"10.0.0.5", "10.0.0.6", "10.0.0.7"}, 60},
		{"location.mec.local.", dns.TypeAAAA, dns.RcodeSuccess, []string{"fd00::5"}, 60},
		{"rni.mec.local.", dns.TypeA, dns.RcodeNameError, nil, 0}, // INACTIVE service
		{"nothing.mec.local.", dns.TypeA, dns.RcodeNameError, nil, 0},
		{"mec.local.", dns.TypeA, dns.RcodeSuccess, nil, 0},
	} {
		for _, network := range []string{"udp", "tcp"} {
			t.Run(network+"/"+tc.name+"/"+dns.TypeToString[tc.qtype], func(t *testing.T) {
				r := query(t, addr, network, tc.name, tc.qtype, 0)
				if r.Rcode != tc.rcode {
					t.Fatalf("rcode %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode])
				}
				if got := ips(r.Answer); !slices.Equal(got, tc.want) {
					t.Fatalf("answer %v, want %v", got, tc.want)
				}
				for _, rr := range r.Answer {
					if rr.Header().Ttl != tc.ttl || rr.Header().Name != tc.name {
						t.Fatalf("record %v: want ttl %d and the name as asked", rr, tc.ttl)
					}
				}
				if tc.rcode == dns.RcodeNameError || (strings.HasSuffix(tc.name, "mec.local.") && len(tc.want) == 0) {
					if len(r.Ns) != 1 || r.Ns[0].Header().Rrtype != dns.TypeSOA || !r.Authoritative {
						t.Fatalf("negative answer in the zone without SOA / AA: %v", r)
					}
				}
			})
		}
	}

	t.Run("SRV", func(t *testing.T) {
		for _, name := range []string{"location.mec.local.", "_location._tcp.mec.local."} {
			r := query(t, addr, "udp", name, dns.TypeSRV, 1232)
			var got []string
			for _, rr := range r.Answer {
				s := rr.(*dns.SRV)
				got = append(got, fmt.Sprintf("%s:%d", s.Target, s.Port))
			}
			slices.Sort(got)
			want := []string{"10-0-0-5.location.mec.local.:8080", "10-0-0-6.location.mec.local.:9090",
				"10-0-0-7.location.mec.local.:443", "fd00--5.location.mec.local.:8081"}
			if !slices.Equal(got, want) {
				t.Fatalf("%s SRV = %v, want %v", name, got, want)
			}
			if len(ips(r.Extra)) != 4 {
				t.Fatalf("additional section %v: want the 4 target addresses", r.Extra)
			}
		}
		r := query(t, addr, "udp", "10-0-0-6.location.mec.local.", dns.TypeA, 0)
		if got := ips(r.Answer); !slices.Equal(got, []string{"10.0.0.6"}) {
			t.Fatalf("SRV target address %v", got)
		}
	})
}

func TestUpdatesFollowTheChangeStream(t *testing.T) {
	st := newStore(t)
	ctx := context.Background()
	addr := start(t, st, nameserver.Config{})
	name := "edge.example.org."
	waitFor := func(what string, ok func(*dns.Msg) bool) {
		t.Helper()
		began := time.Now()
		for time.Since(began) < 10*time.Second {
			if ok(query(t, addr, "udp", name, dns.TypeA, 0)) {
				t.Logf("%s: visible after %s", what, time.Since(began).Round(time.Millisecond))
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Fatalf("%s: not visible", what)
	}
	if _, err := st.CreateAppD(ctx, store.AppD{AppInstanceID: "app1", DNS: []store.Rule{
		dnsRule("r1", name, "IP_V4", "198.51.100.1", ptr(10), "ACTIVE")}}); err != nil {
		t.Fatal(err)
	}
	waitFor("created", func(m *dns.Msg) bool { return slices.Equal(ips(m.Answer), []string{"198.51.100.1"}) })

	r := dnsRule("r1", name, "IP_V4", "198.51.100.2", ptr(10), "ACTIVE")
	r.AppInstanceID = "app1"
	if _, _, err := st.UpdateRule(ctx, r, 0); err != nil {
		t.Fatal(err)
	}
	waitFor("updated", func(m *dns.Msg) bool { return slices.Equal(ips(m.Answer), []string{"198.51.100.2"}) })

	r = dnsRule("r1", name, "IP_V4", "198.51.100.2", ptr(10), "INACTIVE")
	r.AppInstanceID = "app1"
	if _, _, err := st.UpdateRule(ctx, r, 0); err != nil {
		t.Fatal(err)
	}
	waitFor("deactivated", func(m *dns.Msg) bool { return m.Rcode == dns.RcodeServerFailure }) // forwarded now

	if _, err := st.ReplaceAppD(ctx, store.AppD{AppInstanceID: "app1", DNS: []store.Rule{
		dnsRule("r2", name, "IP_V4", "198.51.100.3", nil, "ACTIVE")}}); err != nil {
		t.Fatal(err)
	}
	waitFor("replaced", func(m *dns.Msg) bool { return slices.Equal(ips(m.Answer), []string{"198.51.100.3"}) })
	if err := st.DeleteAppD(ctx, "app1"); err != nil {
		t.Fatal(err)
	}
	waitFor("deleted", func(m *dns.Msg) bool { return m.Rcode == dns.RcodeServerFailure })

	// Services come and go the same way.
	name = "camera.mec.local."
	rec, _, err := st.CreateService(ctx, service("s1", "camera", "ACTIVE", `{"addresses":[{"host":"10.9.0.1","port":554}]}`))
	if err != nil {
		t.Fatal(err)
	}
	waitFor("service added", func(m *dns.Msg) bool { return slices.Equal(ips(m.Answer), []string{"10.9.0.1"}) })
	rec.State = store.StateSuspended
	if _, _, err := st.UpdateService(ctx, rec, 0); err != nil {
		t.Fatal(err)
	}
	waitFor("service suspended", func(m *dns.Msg) bool { return m.Rcode == dns.RcodeNameError })
}

// The store going away leaves the last snapshot answering; it recovers.
func TestStoreOutageKeepsAnswering(t *testing.T) {
	r := testenv.NewRedis(t, testenv.RedisOptions{AOF: true})
	st, err := store.New(store.Options{Client: r.Client(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := st.CreateAppD(ctx, store.AppD{AppInstanceID: "a", DNS: []store.Rule{
		dnsRule("r1", "keep.example.", "IP_V4", "192.0.2.1", nil, "ACTIVE")}}); err != nil {
		t.Fatal(err)
	}
	addr := start(t, st, nameserver.Config{Block: 50 * time.Millisecond})
	r.Stop()
	time.Sleep(300 * time.Millisecond)
	if got := ips(query(t, addr, "udp", "keep.example.", dns.TypeA, 0).Answer); !slices.Equal(got, []string{"192.0.2.1"}) {
		t.Fatalf("during the outage: %v", got)
	}
	if err := r.Restart(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateAppD(ctx, store.AppD{AppInstanceID: "b", DNS: []store.Rule{
		dnsRule("r1", "new.example.", "IP_V4", "192.0.2.2", nil, "ACTIVE")}}); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		if got := ips(query(t, addr, "udp", "new.example.", dns.TypeA, 0).Answer); len(got) == 1 {
			break
		}
		if i > 1000 {
			t.Fatal("no recovery after the store came back")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestTruncationAndEDNS(t *testing.T) {
	st := newStore(t)
	var rules []store.Rule
	for i := range 60 {
		rules = append(rules, dnsRule(fmt.Sprintf("r%d", i), "big.example.test", "IP_V4", fmt.Sprintf("192.0.2.%d", i+1), nil, "ACTIVE"))
	}
	if _, err := st.CreateAppD(context.Background(), store.AppD{AppInstanceID: "app", DNS: rules}); err != nil {
		t.Fatal(err)
	}
	addr := start(t, st, nameserver.Config{})
	for _, tc := range []struct {
		network  string
		edns     uint16
		trunc    bool
		maxBytes int
		all      bool
	}{
		{"udp", 0, true, 512, false},
		{"udp", 700, true, 700, false},
		{"udp", 4096, false, 1232, true}, // 60 A records fit in 1232 bytes
		{"tcp", 0, false, 65535, true},
	} {
		t.Run(fmt.Sprintf("%s/edns%d", tc.network, tc.edns), func(t *testing.T) {
			r := query(t, addr, tc.network, "big.example.test.", dns.TypeA, tc.edns)
			r.Compress = true // as the server sent it
			b, _ := r.Pack()
			if r.Truncated != tc.trunc || len(b) > tc.maxBytes || (len(r.Answer) == 60) != tc.all {
				t.Fatalf("TC=%v, %d bytes, %d answers", r.Truncated, len(b), len(r.Answer))
			}
			if (tc.edns > 0) != (r.IsEdns0() != nil) {
				t.Fatalf("OPT in answer: %v, in query: %v", r.IsEdns0() != nil, tc.edns > 0)
			}
		})
	}
	t.Run("BADVERS", func(t *testing.T) {
		m := new(dns.Msg)
		m.SetQuestion("big.example.test.", dns.TypeA)
		m.SetEdns0(1232, false)
		m.IsEdns0().SetVersion(1)
		r, _, err := (&dns.Client{}).Exchange(m, addr)
		if err != nil {
			t.Fatal(err)
		}
		if r.Rcode != dns.RcodeBadVers {
			t.Fatalf("rcode %s", dns.RcodeToString[r.Rcode])
		}
	})
}

func TestMalformedQueriesGetFORMERR(t *testing.T) {
	addr := start(t, newStore(t), nameserver.Config{})
	good := new(dns.Msg)
	good.SetQuestion("x.mec.local.", dns.TypeA)
	good.Id = 0x4242
	raw, _ := good.Pack()
	for name, pkt := range map[string][]byte{
		"cut in the question": raw[:len(raw)-3],
		"label past the end":  append(append([]byte{}, raw[:12]...), 0x3f, 'a'),
		"two questions":       append(append([]byte{0x42, 0x42, 0x01, 0x00, 0, 2, 0, 0, 0, 0, 0, 0}, raw[12:]...), raw[12:]...),
	} {
		t.Run(name, func(t *testing.T) {
			conn, err := net.Dial("udp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.Write(pkt); err != nil {
				t.Fatal(err)
			}
			_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
			buf := make([]byte, 512)
			n, err := conn.Read(buf)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			var r dns.Msg
			if err := r.Unpack(buf[:n]); err != nil {
				t.Fatal(err)
			}
			if r.Rcode != dns.RcodeFormatError || r.Id != 0x4242 || !r.Response {
				t.Fatalf("answer %v", &r)
			}
		})
	}
	// A valid query still works afterwards: nothing crashed.
	if r := query(t, addr, "udp", "x.mec.local.", dns.TypeA, 0); r.Rcode != dns.RcodeNameError {
		t.Fatalf("after the malformed packets: %s", dns.RcodeToString[r.Rcode])
	}
}

func TestDig(t *testing.T) {
	dig, err := exec.LookPath("dig")
	if err != nil {
		t.Fatal("dig is missing: install Debian's dnsutils (apt-get install -y dnsutils)")
	}
	st := newStore(t)
	if _, err := st.CreateAppD(context.Background(), store.AppD{AppInstanceID: "app", DNS: []store.Rule{
		dnsRule("r1", "laptop.example.", "IP_V4", "203.0.113.9", ptr(42), "ACTIVE")}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.CreateService(context.Background(), service("s1", "echo", "ACTIVE", `{"addresses":[{"host":"10.0.0.9","port":7}]}`)); err != nil {
		t.Fatal(err)
	}
	addr := start(t, st, nameserver.Config{})
	host, port, _ := net.SplitHostPort(addr)
	for _, tc := range []struct{ args, want string }{
		{"laptop.example. A +noall +answer", "laptop.example. 42 IN A 203.0.113.9"},
		{"laptop.example. A +tcp +noall +answer", "laptop.example. 42 IN A 203.0.113.9"},
		{"echo.mec.local. SRV +noall +answer", "echo.mec.local. 60 IN SRV 10 10 7 10-0-0-9.echo.mec.local."},
		{"nope.mec.local. A", "status: NXDOMAIN"},
	} {
		out, err := exec.Command(dig, append([]string{"@" + host, "-p", port, "+tries=1", "+time=3"}, strings.Fields(tc.args)...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("dig %s: %v\n%s", tc.args, err, out)
		}
		if !strings.Contains(strings.Join(strings.Fields(string(out)), " "), tc.want) {
			t.Fatalf("dig %s:\n%s\nwant %q", tc.args, out, tc.want)
		}
	}
}
