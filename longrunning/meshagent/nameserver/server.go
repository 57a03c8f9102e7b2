package nameserver

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kmep-io/kmep/store"
)

// Store is what the server reads: the DNS rules, the services, and the
// change stream that keeps its copy of them current.
type Store interface {
	RuleApps(ctx context.Context, kind string) ([]string, error)
	ListRules(ctx context.Context, kind, app string) ([]store.Rule, error)
	AllServices(ctx context.Context) ([]store.ServiceRecord, error)
	LastChangeID(ctx context.Context) (string, error)
	ReadChanges(ctx context.Context, after string, count int64, block time.Duration) ([]store.Change, error)
}

var _ Store = (*store.Store)(nil)

// Config configures a Server.
type Config struct {
	// Addr is the host:port served over UDP and TCP. Zero value:
	// 127.0.0.1:5353. Ignored for a protocol whose PacketConn or Listener
	// is given.
	Addr string
	// PacketConn and Listener, when set, are served instead of listening
	// on Addr (tests pass sockets bound to port 0). Run closes them.
	PacketConn net.PacketConn
	Listener   net.Listener
	// Zone is the zone of the service names. Zero value: "mec.local.".
	Zone string
	// Upstreams are the resolvers (host:port) other names are forwarded
	// to. Zero value: the nameservers of ResolvConf.
	Upstreams []string
	// ResolvConf is read when Upstreams is empty. Zero value:
	// /etc/resolv.conf. When it cannot be read, forwarded names get
	// SERVFAIL (logged once at start).
	ResolvConf string
	// TTL is the TTL of service records and of DNS rules without one, in
	// seconds. Zero value: 60.
	TTL uint32
	// UpstreamTimeout bounds one exchange with one upstream. Zero value: 2 s.
	UpstreamTimeout time.Duration
	// CacheSize bounds the forwarding cache (entries). Zero value: 10,000;
	// negative: no cache.
	CacheSize int
	// MaxCacheTTL caps how long a forwarded answer is cached. Zero value: 1 h.
	MaxCacheTTL time.Duration
	// Block is how long one read of the change stream waits; it bounds how
	// late an update is answered. Zero value: 250 ms.
	Block time.Duration
}

// Deps are the Server's dependencies.
type Deps struct {
	// Store holds the rules and services. Required.
	Store Store
	// Log is the logger. Zero value: slog.Default().
	Log *slog.Logger
	// Metrics is the binary's registry (see metrics.go). Zero value:
	// nothing is registered.
	Metrics prometheus.Registerer
}

// Server is the DNS server. Run it once.
type Server struct {
	cfg   Config
	store Store
	log   *slog.Logger
	zone  atomic.Pointer[zoneData]
	fwd   *forwarder
	// synced is the unix nanos of the last successful store read.
	synced atomic.Int64
	m      dnsMetrics
}

var _ dns.Handler = (*Server)(nil)

// New checks cfg and returns a Server that answers from an empty zone
// until Run has loaded the store.
func New(cfg Config, deps Deps) (*Server, error) {
	if deps.Store == nil {
		return nil, errors.New("nameserver: Deps.Store is required")
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:5353"
	}
	if cfg.Zone == "" {
		cfg.Zone = "mec.local."
	}
	cfg.Zone = dns.Fqdn(strings.ToLower(cfg.Zone))
	if _, ok := dns.IsDomainName(cfg.Zone); !ok || cfg.Zone == "." || strings.ContainsFunc(cfg.Zone, func(r rune) bool {
		return !(r == '.' || r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9')
	}) {
		return nil, fmt.Errorf("nameserver: zone %q is not a domain name", cfg.Zone)
	}
	if cfg.ResolvConf == "" {
		cfg.ResolvConf = "/etc/resolv.conf"
	}
	if cfg.TTL == 0 {
		cfg.TTL = 60
	}
	if cfg.UpstreamTimeout == 0 {
		cfg.UpstreamTimeout = 2 * time.Second
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = 10_000
	}
	if cfg.MaxCacheTTL == 0 {
		cfg.MaxCacheTTL = time.Hour
	}
	if cfg.Block == 0 {
		cfg.Block = 250 * time.Millisecond
	}
	if cfg.UpstreamTimeout < 0 || cfg.MaxCacheTTL < 0 || cfg.Block < 0 {
		return nil, errors.New("nameserver: durations must be positive")
	}
	for _, u := range cfg.Upstreams {
		if _, _, err := net.SplitHostPort(u); err != nil {
			return nil, fmt.Errorf("nameserver: upstream %q: %w", u, err)
		}
	}
	s := &Server{cfg: cfg, store: deps.Store, log: deps.Log}
	s.m = s.registerMetrics(deps.Metrics)
	if s.log == nil {
		s.log = slog.Default()
	}
	ups := cfg.Upstreams
	if len(ups) == 0 {
		var err error
		if ups, err = UpstreamsFromResolvConf(cfg.ResolvConf); err != nil {
			s.log.Warn("no upstream resolvers: names outside the rules and the zone get SERVFAIL", "err", err)
		}
	}
	s.fwd = &forwarder{upstreams: ups, now: time.Now,
		udp:   &dns.Client{Net: "udp", Timeout: cfg.UpstreamTimeout, UDPSize: dns.DefaultMsgSize},
		tcp:   &dns.Client{Net: "tcp", Timeout: cfg.UpstreamTimeout},
		cache: &answerCache{m: map[cacheKey]cacheEntry{}, max: cfg.CacheSize, maxTTL: cfg.MaxCacheTTL}}
	s.zone.Store(build(cfg.Zone, cfg.TTL, nil, nil))
	return s, nil
}

// Synced reports whether the server has read the store within the last
// maxAge (its answers are at most that stale).
func (s *Server) Synced(maxAge time.Duration) bool {
	t := s.synced.Load()
	return t != 0 && time.Since(time.Unix(0, t)) < maxAge
}

// Run listens on UDP and TCP, loads the rules and services and follows the
// change stream until ctx ends; then it shuts the listeners down. It
// returns an error only when it cannot listen.
func (s *Server) Run(ctx context.Context) error {
	pc, ln := s.cfg.PacketConn, s.cfg.Listener
	var err error
	if pc == nil {
		if pc, err = net.ListenPacket("udp", s.cfg.Addr); err != nil {
			if ln != nil {
				_ = ln.Close()
			}
			return fmt.Errorf("nameserver: listen udp %s: %w", s.cfg.Addr, err)
		}
	}
	if ln == nil {
		addr := s.cfg.Addr
		if s.cfg.PacketConn == nil { // the same port as UDP, when Addr asked for any port
			addr = pc.LocalAddr().String()
		}
		if ln, err = net.Listen("tcp", addr); err != nil {
			_ = pc.Close()
			return fmt.Errorf("nameserver: listen tcp %s: %w", addr, err)
		}
	}
	udp := &dns.Server{PacketConn: pc, Handler: s, UDPSize: dns.MaxMsgSize}
	tcp := &dns.Server{Listener: ln, Handler: s, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second}
	served := make(chan error, 2)
	for _, srv := range []*dns.Server{udp, tcp} {
		go func() { served <- srv.ActivateAndServe() }()
	}
	s.log.Info("dns listening", "udp", pc.LocalAddr().String(), "tcp", ln.Addr().String(), "zone", s.cfg.Zone,
		"upstreams", s.fwd.upstreams)
	followed := make(chan struct{})
	fctx, stop := context.WithCancel(ctx)
	go func() { defer close(followed); s.follow(fctx) }()
	select {
	case <-ctx.Done():
	case err = <-served:
		err = fmt.Errorf("nameserver: serve: %w", err)
	}
	stop()
	<-followed
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = udp.ShutdownContext(sctx)
	_ = tcp.ShutdownContext(sctx)
	return err
}

// follow loads the store and applies its changes until ctx ends; after a
// failure it keeps answering from what it has, backs off and reloads.
func (s *Server) follow(ctx context.Context) {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		err := s.followOnce(ctx)
		s.synced.Store(0)
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("dns: store follow failed; answering from the last snapshot", "err", err, "retry", backoff)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

func ruleKey(app, id string) string { return app + "\x00" + id }

// Rebuilds of the zone are coalesced: the next one waits ten times as long
// as the last one took (so rebuilding costs at most a tenth of a core),
// within [minRebuild, maxRebuild]; a change is answered at most maxRebuild
// (plus the stream read) after it.
const (
	minRebuild = 100 * time.Millisecond
	maxRebuild = 800 * time.Millisecond
)

func (s *Server) followOnce(ctx context.Context) error {
	last, err := s.store.LastChangeID(ctx)
	if err != nil {
		return err
	}
	rules := map[string]store.Rule{}
	apps, err := s.store.RuleApps(ctx, store.RuleDNS)
	if err != nil {
		return err
	}
	for _, app := range apps {
		rs, err := s.store.ListRules(ctx, store.RuleDNS, app)
		if err != nil {
			return err
		}
		for _, r := range rs {
			rules[ruleKey(app, r.ID)] = r
		}
	}
	all, err := s.store.AllServices(ctx)
	if err != nil {
		return err
	}
	services := make(map[string]service, len(all))
	for _, r := range all {
		services[r.ID] = newService(r)
	}
	s.zone.Store(build(s.cfg.Zone, s.cfg.TTL, rules, services))
	s.synced.Store(time.Now().UnixNano())
	s.log.Debug("dns loaded", "rules", len(rules), "services", len(services))
	// A burst of registrations costs a few rebuilds, not one per read.
	lastBuild, pending, every := time.Now(), false, minRebuild
	for {
		block := s.cfg.Block
		if pending {
			block = max(time.Millisecond, every-time.Since(lastBuild))
		}
		chs, err := s.store.ReadChanges(ctx, last, 1000, block)
		if err != nil {
			return err
		}
		for _, ch := range chs {
			last = ch.StreamID
			switch ch.Kind {
			case store.KindDNSRule:
				k := ruleKey(ch.AppInstanceID, ch.ID)
				if old, ok := rules[k]; ok && old.Rev >= ch.Rev {
					continue // the snapshot was newer than this replayed entry
				}
				if ch.Type == store.ChangeRemoved || ch.Type == store.ChangeDeleted {
					delete(rules, k)
				} else {
					rules[k] = store.Rule{Kind: store.RuleDNS, AppInstanceID: ch.AppInstanceID, ID: ch.ID,
						State: ch.State, Body: ch.Data, Rev: ch.Rev}
				}
				pending = true
			case store.KindService:
				r := ch.Service
				if old, ok := services[r.ID]; ok && old.rev >= r.Rev {
					continue
				}
				if ch.Type == store.ChangeRemoved {
					delete(services, r.ID)
				} else {
					services[r.ID] = newService(r)
				}
				pending = true
			}
		}
		if pending && time.Since(lastBuild) >= every {
			start := time.Now()
			s.zone.Store(build(s.cfg.Zone, s.cfg.TTL, rules, services))
			lastBuild, pending = time.Now(), false
			every = min(max(10*lastBuild.Sub(start), minRebuild), maxRebuild)
		}
		s.synced.Store(time.Now().UnixNano())
	}
}

// ServeDNS answers one query (the miekg/dns server has already answered
// FORMERR to packets that do not parse).
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	_, tcp := w.RemoteAddr().(*net.TCPAddr)
	resp := s.respond(req, tcp)
	s.m.count(resp)
	if err := w.WriteMsg(resp); err != nil {
		s.log.Debug("dns write", "err", err, "client", w.RemoteAddr().String())
	}
}

// Answer is the server's answer to one raw query packet, as it would be
// sent over UDP (tcp false) or TCP: nil when the packet is too short to
// carry a header or is itself a response (like the miekg/dns server, it
// stays silent rather than be an amplifier), FORMERR when it does not
// parse, NOTIMP for opcodes other than QUERY.
func (s *Server) Answer(raw []byte, tcp bool) []byte {
	if len(raw) < 12 {
		return nil
	}
	h := dns.Header{Id: binary.BigEndian.Uint16(raw), Bits: binary.BigEndian.Uint16(raw[2:]),
		Qdcount: binary.BigEndian.Uint16(raw[4:]), Ancount: binary.BigEndian.Uint16(raw[6:]),
		Nscount: binary.BigEndian.Uint16(raw[8:]), Arcount: binary.BigEndian.Uint16(raw[10:])}
	hdr := dns.MsgHdr{Id: h.Id, Response: true, Opcode: int(h.Bits>>11) & 0xF}
	var resp *dns.Msg
	switch dns.DefaultMsgAcceptFunc(h) {
	case dns.MsgIgnore:
		return nil
	case dns.MsgRejectNotImplemented:
		resp = &dns.Msg{MsgHdr: hdr}
		resp.Rcode = dns.RcodeNotImplemented
	case dns.MsgReject:
		resp = &dns.Msg{MsgHdr: hdr}
		resp.Rcode = dns.RcodeFormatError
	default:
		req := new(dns.Msg)
		if err := req.Unpack(raw); err != nil {
			resp = &dns.Msg{MsgHdr: hdr}
			resp.Rcode = dns.RcodeFormatError
		} else {
			resp = s.respond(req, tcp)
		}
	}
	s.m.count(resp)
	b, err := resp.Pack()
	if err != nil {
		fail := &dns.Msg{MsgHdr: hdr}
		fail.Rcode = dns.RcodeServerFailure
		b, _ = fail.Pack()
	}
	return b
}

// ednsSize is the UDP payload size this server advertises.
const ednsSize = 1232

func (s *Server) respond(req *dns.Msg, tcp bool) *dns.Msg {
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.RecursionAvailable = true
	opt := req.IsEdns0()
	finish := func() *dns.Msg {
		size := dns.MinMsgSize
		if opt != nil {
			resp.SetEdns0(ednsSize, opt.Do())
			size = max(size, int(min(opt.UDPSize(), ednsSize)))
		}
		if tcp {
			size = dns.MaxMsgSize
		}
		resp.Truncate(size)
		return resp
	}
	switch {
	case req.Opcode != dns.OpcodeQuery:
		resp.Rcode = dns.RcodeNotImplemented
		resp.Question = nil
		return finish()
	case len(req.Question) != 1:
		resp.Rcode = dns.RcodeFormatError
		return finish()
	case opt != nil && opt.Version() != 0:
		resp.Rcode = dns.RcodeBadVers
		return finish()
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	z := s.zone.Load()
	n, own := z.names[name]
	if !own && !z.inZone(name) {
		if q.Qclass == dns.ClassINET && q.Qtype != dns.TypeAXFR && q.Qtype != dns.TypeIXFR {
			return s.forwarded(req, resp, finish)
		}
		resp.Rcode = dns.RcodeRefused
		return finish()
	}
	resp.Authoritative = true
	switch {
	case q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY:
		resp.Rcode = dns.RcodeRefused
	case q.Qtype == dns.TypeAXFR || q.Qtype == dns.TypeIXFR:
		resp.Rcode = dns.RcodeRefused
	case n == nil:
		resp.Rcode = dns.RcodeNameError
		resp.Ns = []dns.RR{z.soa}
	default:
		if q.Qtype == dns.TypeANY {
			for _, rrs := range n.rrs {
				resp.Answer = append(resp.Answer, rrs...)
			}
		} else {
			resp.Answer = append(resp.Answer, n.rrs[q.Qtype]...)
		}
		if q.Qtype == dns.TypeSRV || q.Qtype == dns.TypeANY {
			resp.Extra = append(resp.Extra, n.extra...)
		}
		if len(resp.Answer) == 0 && z.inZone(name) {
			resp.Ns = []dns.RR{z.soa}
		}
		if q.Name != name { // answer with the case the client asked in
			for i, rr := range resp.Answer {
				rr = dns.Copy(rr)
				rr.Header().Name = q.Name
				resp.Answer[i] = rr
			}
		}
	}
	return finish()
}

func (s *Server) forwarded(req, resp *dns.Msg, finish func() *dns.Msg) *dns.Msg {
	ctx, cancel := context.WithTimeout(context.Background(), 2*s.cfg.UpstreamTimeout)
	defer cancel()
	up, err := s.fwd.forward(ctx, req)
	s.m.forwarded.Inc()
	if err != nil {
		s.log.Debug("dns forward failed", "name", req.Question[0].Name, "err", err)
		resp.Rcode = dns.RcodeServerFailure
		return finish()
	}
	resp.Rcode = up.Rcode
	resp.Authoritative = false
	resp.AuthenticatedData = up.AuthenticatedData
	resp.Answer, resp.Ns, resp.Extra = up.Answer, up.Ns, up.Extra
	return finish()
}
