package nameserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// ErrUpstream is returned (wrapped) when no upstream resolver answered.
var ErrUpstream = errors.New("no upstream resolver answered")

// UpstreamsFromResolvConf reads the nameservers of a resolv.conf file as
// host:port addresses.
func UpstreamsFromResolvConf(path string) ([]string, error) {
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	out := make([]string, 0, len(cc.Servers))
	for _, s := range cc.Servers {
		out = append(out, net.JoinHostPort(s, cc.Port))
	}
	return out, nil
}

type cacheKey struct {
	name         string
	qtype, class uint16
	do, cd       bool
}

type cacheEntry struct {
	msg     *dns.Msg
	stored  time.Time
	expires time.Time
}

// answerCache keeps upstream answers until their TTL ends.
type answerCache struct {
	mu     sync.Mutex
	m      map[cacheKey]cacheEntry
	max    int
	maxTTL time.Duration
}

func (c *answerCache) get(k cacheKey, now time.Time) (*dns.Msg, bool) {
	c.mu.Lock()
	e, ok := c.m[k]
	c.mu.Unlock()
	if !ok || !now.Before(e.expires) {
		return nil, false
	}
	m := e.msg.Copy()
	age := uint32(now.Sub(e.stored) / time.Second)
	for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			if h := rr.Header(); h.Rrtype != dns.TypeOPT {
				h.Ttl -= min(age, h.Ttl)
			}
		}
	}
	return m, true
}

// ttlOf is how long an upstream answer may be cached: the smallest TTL of
// its answer and authority records (for a negative answer, the SOA's
// minimum, RFC 2308); zero means "do not cache".
func ttlOf(m *dns.Msg) time.Duration {
	if m.Rcode != dns.RcodeSuccess && m.Rcode != dns.RcodeNameError || m.Truncated {
		return 0
	}
	ttl := uint32(1<<31 - 1)
	seen := false
	for _, sec := range [][]dns.RR{m.Answer, m.Ns} {
		for _, rr := range sec {
			t := rr.Header().Ttl
			if soa, ok := rr.(*dns.SOA); ok && len(m.Answer) == 0 {
				t = min(t, soa.Minttl)
			}
			ttl = min(ttl, t)
			seen = true
		}
	}
	if !seen {
		return 0
	}
	return time.Duration(ttl) * time.Second
}

func (c *answerCache) put(k cacheKey, m *dns.Msg, now time.Time) {
	ttl := min(ttlOf(m), c.maxTTL)
	if ttl <= 0 || c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		n := 0
		for key, e := range c.m { // expired first, then whatever comes
			if !now.Before(e.expires) || n < c.max/8+1 {
				delete(c.m, key)
				n++
			}
		}
	}
	c.m[k] = cacheEntry{msg: m.Copy(), stored: now, expires: now.Add(ttl)}
}

// forwarder sends queries to the upstream resolvers in turn.
type forwarder struct {
	upstreams []string
	udp, tcp  *dns.Client
	cache     *answerCache
	now       func() time.Time
}

func (f *forwarder) key(req *dns.Msg) cacheKey {
	q := req.Question[0]
	k := cacheKey{name: strings.ToLower(q.Name), qtype: q.Qtype, class: q.Qclass, cd: req.CheckingDisabled}
	if o := req.IsEdns0(); o != nil {
		k.do = o.Do()
	}
	return k
}

// forward answers req from the cache or the upstreams. The answer carries
// req's id and no OPT record (the caller adds its own).
func (f *forwarder) forward(ctx context.Context, req *dns.Msg) (*dns.Msg, error) {
	k := f.key(req)
	if m, ok := f.cache.get(k, f.now()); ok {
		m.Id = req.Id
		return m, nil
	}
	out := new(dns.Msg)
	out.Id = dns.Id()
	out.RecursionDesired = req.RecursionDesired
	out.CheckingDisabled = req.CheckingDisabled
	out.Question = []dns.Question{req.Question[0]}
	out.SetEdns0(dns.DefaultMsgSize, k.do)
	if len(f.upstreams) == 0 {
		return nil, fmt.Errorf("%w: none configured", ErrUpstream)
	}
	var errs []error
	for _, up := range f.upstreams {
		resp, _, err := f.udp.ExchangeContext(ctx, out, up)
		if err == nil && resp.Truncated {
			resp, _, err = f.tcp.ExchangeContext(ctx, out, up)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", up, err))
			continue
		}
		if resp.Rcode == dns.RcodeServerFailure || resp.Rcode == dns.RcodeRefused {
			errs = append(errs, fmt.Errorf("%s: %s", up, dns.RcodeToString[resp.Rcode]))
			continue
		}
		resp.Extra = stripOPT(resp.Extra)
		f.cache.put(k, resp, f.now())
		resp.Id = req.Id
		return resp, nil
	}
	return nil, fmt.Errorf("%w: %w", ErrUpstream, errors.Join(errs...))
}

func stripOPT(rrs []dns.RR) []dns.RR {
	out := rrs[:0]
	for _, rr := range rrs {
		if rr.Header().Rrtype != dns.TypeOPT {
			out = append(out, rr)
		}
	}
	return out
}
