package nameserver

import (
	"encoding/json"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/miekg/dns"

	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/mec"
)

// node is what one owner name holds: its records by type, and the records
// to put in the additional section with them (addresses of SRV targets).
type node struct {
	rrs   map[uint16][]dns.RR
	extra []dns.RR
}

// zoneData is an immutable snapshot of every name the server answers
// itself. It is rebuilt after each batch of changes and swapped in whole.
type zoneData struct {
	names map[string]*node // lower-case FQDN
	zone  string           // the service zone, lower-case FQDN
	soa   *dns.SOA
}

func (z *zoneData) inZone(name string) bool {
	return dns.IsSubDomain(z.zone, name)
}

func (z *zoneData) add(rr dns.RR) {
	h := rr.Header()
	h.Name = strings.ToLower(h.Name)
	n := z.names[h.Name]
	if n == nil {
		n = &node{rrs: map[uint16][]dns.RR{}}
		z.names[h.Name] = n
	}
	for _, old := range n.rrs[h.Rrtype] {
		if dns.IsDuplicate(old, rr) {
			return
		}
	}
	n.rrs[h.Rrtype] = append(n.rrs[h.Rrtype], rr)
	// Every ancestor inside the zone exists (an empty non-terminal):
	// NODATA, not NXDOMAIN.
	if z.inZone(h.Name) {
		for p := h.Name; p != z.zone; {
			i, end := dns.NextLabel(p, 0)
			if end {
				break
			}
			p = p[i:]
			if z.names[p] == nil {
				z.names[p] = &node{rrs: map[uint16][]dns.RR{}}
			}
		}
	}
}

// ruleRR turns an ACTIVE DNS rule into its A or AAAA record; ok is false
// for rules that are not ACTIVE or whose body does not decode.
func ruleRR(r store.Rule, defTTL uint32) (dns.RR, bool) {
	if r.State != store.StateActive {
		return nil, false
	}
	var d mec.DNSRule
	if err := json.Unmarshal(r.Body, &d); err != nil || d.State != "" && d.State != store.StateActive {
		return nil, false
	}
	name := dns.Fqdn(strings.ToLower(d.DomainName))
	if _, ok := dns.IsDomainName(name); !ok || name == "." {
		return nil, false
	}
	ip := net.ParseIP(d.IPAddress)
	if ip == nil {
		return nil, false
	}
	ttl := defTTL
	if d.TTL != nil {
		ttl = uint32(max(0, min(*d.TTL, mec.MaxTTL)))
	}
	hdr := dns.RR_Header{Name: name, Class: dns.ClassINET, Ttl: ttl}
	switch {
	case d.IPAddressType == "IP_V6" && ip.To4() == nil:
		hdr.Rrtype = dns.TypeAAAA
		return &dns.AAAA{Hdr: hdr, AAAA: ip}, true
	case d.IPAddressType != "IP_V6" && ip.To4() != nil:
		hdr.Rrtype = dns.TypeA
		return &dns.A{Hdr: hdr, A: ip.To4()}, true
	}
	return nil, false
}

// Endpoints returns the hosts and ports of a ServiceInfo's transportInfo
// endpoint (addresses, then uris; a uri without a port gets its scheme's).
func Endpoints(info []byte) (serName string, eps []Endpoint) {
	// Only the members read here: decoding a whole mec.ServiceInfo for
	// every change was a tenth of the agent's CPU under registration load.
	var si struct {
		SerName       string `json:"serName"`
		TransportInfo *struct {
			Endpoint *mec.EndPointInfo `json:"endpoint"`
		} `json:"transportInfo"`
	}
	if json.Unmarshal(info, &si) != nil {
		return "", nil
	}
	if si.TransportInfo == nil || si.TransportInfo.Endpoint == nil {
		return si.SerName, nil
	}
	ep := si.TransportInfo.Endpoint
	for _, a := range ep.Addresses {
		if a.Host != "" && a.Port > 0 && a.Port < 65536 {
			eps = append(eps, Endpoint{Host: a.Host, Port: uint16(a.Port)})
		}
	}
	for _, u := range ep.URIs {
		pu, err := url.Parse(u)
		if err != nil || pu.Hostname() == "" {
			continue
		}
		port := 0
		if p := pu.Port(); p != "" {
			port, _ = strconv.Atoi(p)
		} else {
			switch pu.Scheme {
			case "http", "ws":
				port = 80
			case "https", "wss":
				port = 443
			}
		}
		if port > 0 && port < 65536 {
			eps = append(eps, Endpoint{Host: pu.Hostname(), Port: uint16(port)})
		}
	}
	return si.SerName, eps
}

// dashes spells an IP address as one DNS label.
var dashes = strings.NewReplacer(".", "-", ":", "-")

// Endpoint is a service endpoint's host (an IP address or a name) and port.
type Endpoint struct {
	Host string
	Port uint16
}

// serviceRRs adds the records of the ACTIVE services named name: A/AAAA
// at `<name>.<zone>`, and SRV there and at `_<name>._tcp.<zone>` whose
// targets are `<ip-with-dashes>.<name>.<zone>` (or the endpoint's own host
// name).
func (z *zoneData) addService(name string, eps []Endpoint, ttl uint32) {
	label := strings.ToLower(name)
	owner := label + "." + z.zone
	if _, ok := dns.IsDomainName(owner); !ok || strings.ContainsAny(label, " *\\") || label == "" {
		return
	}
	srvOwner := "_" + label + "._tcp." + z.zone
	for _, ep := range eps {
		target := dns.Fqdn(strings.ToLower(ep.Host))
		var addr dns.RR
		if ip := net.ParseIP(ep.Host); ip != nil {
			target = dashes.Replace(ip.String()) + "." + owner
			if ip4 := ip.To4(); ip4 != nil {
				z.add(&dns.A{Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl}, A: ip4})
				addr = &dns.A{Hdr: dns.RR_Header{Name: target, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl}, A: ip4}
			} else {
				z.add(&dns.AAAA{Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: ttl}, AAAA: ip})
				addr = &dns.AAAA{Hdr: dns.RR_Header{Name: target, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: ttl}, AAAA: ip}
			}
			z.add(addr)
		} else if _, ok := dns.IsDomainName(target); !ok {
			continue
		}
		for _, o := range []string{owner, srvOwner} {
			srv := &dns.SRV{Hdr: dns.RR_Header{Name: o, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: ttl},
				Priority: 10, Weight: 10, Port: ep.Port, Target: target}
			z.add(srv)
			if addr != nil {
				n := z.names[o]
				if !containsRR(n.extra, addr) {
					n.extra = append(n.extra, addr)
				}
			}
		}
	}
}

func containsRR(list []dns.RR, rr dns.RR) bool {
	for _, x := range list {
		if dns.IsDuplicate(x, rr) {
			return true
		}
	}
	return false
}

// service is a MEC service as the zone needs it: its ServiceInfo parsed
// once, when its change arrives, not at every rebuild.
type service struct {
	rev    int64
	active bool
	name   string
	eps    []Endpoint
}

func newService(r store.ServiceRecord) service {
	name, eps := Endpoints(r.Info)
	if name == "" {
		name = r.Name
	}
	return service{rev: r.Rev, active: r.State == store.StateActive, name: name, eps: eps}
}

// build makes a snapshot from the rules and services currently known.
func build(zone string, ttl uint32, rules map[string]store.Rule, services map[string]service) *zoneData {
	z := &zoneData{names: map[string]*node{}, zone: zone}
	z.soa = &dns.SOA{Hdr: dns.RR_Header{Name: zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl},
		Ns: "ns." + zone, Mbox: "hostmaster." + zone, Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: ttl}
	z.names[zone] = &node{rrs: map[uint16][]dns.RR{dns.TypeSOA: {z.soa}}}
	keys := make([]string, 0, len(rules))
	for k := range rules {
		keys = append(keys, k)
	}
	sort.Strings(keys) // configuration order does not matter; determinism does
	for _, k := range keys {
		if rr, ok := ruleRR(rules[k], ttl); ok {
			z.add(rr)
		}
	}
	ids := make([]string, 0, len(services))
	for id := range services {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if sv := services[id]; sv.active {
			z.addService(sv.name, sv.eps, ttl)
		}
	}
	return z
}
