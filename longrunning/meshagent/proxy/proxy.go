// Package proxy is the mesh agent's service proxy. It listens, on one
// address of the node, for each service exposed across the mesh, and
// carries every accepted TCP connection to one of the service's endpoints:
// by a plain dial when the endpoint is on this node, else over one libp2p
// stream per connection to the node whose networks hold the endpoint,
// which dials it there. Endpoints are chosen round robin, at random, or by
// a consistent (rendezvous) hash of the client's IP address, which keeps a
// client on the same endpoint while the endpoint set stays the same.
package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kmep-io/kmep/longrunning/meshagent/tunnel"
)

// Protocol is the libp2p protocol of proxied connections. A stream starts
// with the target "ip:port\n"; the far side answers "OK\n" once it has
// dialed it, or "ERR <reason>\n"; then bytes flow both ways.
const Protocol protocol.ID = "/kmep/mesh/proxy/1.0.0"

// Tunnel is what the proxy needs of the libp2p side.
type Tunnel interface {
	PeerFor(ip netip.Addr) (peer.ID, bool)
	Local(ip netip.Addr) bool
	Open(ctx context.Context, id peer.ID, p protocol.ID) (network.Stream, error)
	Handle(p protocol.ID, fn network.StreamHandler)
}

var _ Tunnel = (*tunnel.Tunnel)(nil)

// Balance is a load-balancing policy.
type Balance string

// The policies.
const (
	RoundRobin Balance = "round-robin"
	Random     Balance = "random"
	SourceHash Balance = "source-hash"
)

// ParseBalance checks a policy name ("" is RoundRobin).
func ParseBalance(s string) (Balance, error) {
	switch b := Balance(s); b {
	case "":
		return RoundRobin, nil
	case RoundRobin, Random, SourceHash:
		return b, nil
	}
	return "", fmt.Errorf("proxy: unknown balance %q (round-robin, random, source-hash)", s)
}

// Service is one exposed service port: the proxy listens on
// ListenIP:Port and forwards to Backends.
type Service struct {
	Name     string
	Port     uint16
	Backends []netip.AddrPort
}

// Config configures a Proxy.
type Config struct {
	// ListenIP is the address the service listeners bind. Zero value:
	// 127.0.0.1.
	ListenIP netip.Addr
	// Balance picks an endpoint per connection. Zero value: RoundRobin.
	Balance Balance
	// DialTimeout bounds reaching an endpoint (tunnel included). Zero
	// value: 5 s.
	DialTimeout time.Duration
}

// Deps are the Proxy's dependencies.
type Deps struct {
	// Tunnel carries connections to other nodes. Required.
	Tunnel Tunnel
	// Log is the logger. Zero value: slog.Default().
	Log *slog.Logger
	// Metrics is the binary's registry (see metrics.go). Zero value:
	// nothing is registered.
	Metrics prometheus.Registerer
}

// ErrNoEndpoint is returned (wrapped) when no endpoint of a service could
// be reached.
var ErrNoEndpoint = errors.New("proxy: no endpoint reachable")

// Proxy is the service proxy.
type Proxy struct {
	cfg Config
	tun Tunnel
	log *slog.Logger
	m   proxyMetrics
	// bufs holds the copy buffers (copyBuf each) of ended connections.
	bufs *sync.Pool

	mu        sync.Mutex
	listeners map[uint16]*listener
	closed    bool
	wg        sync.WaitGroup
}

type listener struct {
	ln       net.Listener
	svc      atomic.Pointer[Service]
	rr       atomic.Uint64
	conns    sync.Map // net.Conn -> struct{}
	stopOnce sync.Once
}

// New returns a Proxy and registers its stream handler on the tunnel.
func New(cfg Config, deps Deps) (*Proxy, error) {
	if deps.Tunnel == nil {
		return nil, errors.New("proxy: Deps.Tunnel is required")
	}
	if !cfg.ListenIP.IsValid() {
		cfg.ListenIP = netip.MustParseAddr("127.0.0.1")
	}
	b, err := ParseBalance(string(cfg.Balance))
	if err != nil {
		return nil, err
	}
	cfg.Balance = b
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.DialTimeout < 0 {
		return nil, errors.New("proxy: DialTimeout must be positive")
	}
	p := &Proxy{cfg: cfg, tun: deps.Tunnel, log: deps.Log, listeners: map[uint16]*listener{}, m: newMetrics(deps.Metrics), bufs: newBufs()}
	if p.log == nil {
		p.log = slog.Default()
	}
	deps.Tunnel.Handle(Protocol, p.serveStream)
	return p, nil
}

// Set makes the listeners match services: new ports are opened, gone ones
// closed (with their connections), and the endpoints of the others
// replaced. A port that cannot be bound is logged and reported; the others
// are still served.
func (p *Proxy) Set(services []Service) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("proxy: closed")
	}
	want := map[uint16]Service{}
	for _, s := range services {
		if s.Port == 0 || len(s.Backends) == 0 {
			continue
		}
		if old, ok := want[s.Port]; ok { // two names on one port: merge
			s.Backends = append(slices.Clone(old.Backends), s.Backends...)
			s.Name = old.Name + "," + s.Name
		}
		want[s.Port] = s
	}
	for port, l := range p.listeners {
		if _, ok := want[port]; !ok {
			l.stop()
			delete(p.listeners, port)
		}
	}
	var errs []error
	for port, s := range want {
		s.Backends = slices.Clone(s.Backends)
		slices.SortFunc(s.Backends, func(a, b netip.AddrPort) int { return a.Compare(b) })
		s.Backends = slices.Compact(s.Backends)
		if l := p.listeners[port]; l != nil {
			l.svc.Store(&s)
			continue
		}
		addr := netip.AddrPortFrom(p.cfg.ListenIP, port).String()
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			p.log.Warn("service listener", "service", s.Name, "addr", addr, "err", err)
			errs = append(errs, fmt.Errorf("listen %s for %s: %w", addr, s.Name, err))
			continue
		}
		l := &listener{ln: ln}
		l.svc.Store(&s)
		p.listeners[port] = l
		p.wg.Add(1)
		go p.accept(l)
		p.log.Info("service listener", "service", s.Name, "addr", addr, "endpoints", len(s.Backends))
	}
	return errors.Join(errs...)
}

// Addrs lists the listening addresses by port.
func (p *Proxy) Addrs() map[uint16]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[uint16]string, len(p.listeners))
	for port, l := range p.listeners {
		out[port] = l.ln.Addr().String()
	}
	return out
}

// Close stops every listener and connection and waits for them.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	for port, l := range p.listeners {
		l.stop()
		delete(p.listeners, port)
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (l *listener) stop() {
	l.stopOnce.Do(func() {
		_ = l.ln.Close()
		l.conns.Range(func(k, _ any) bool { _ = k.(net.Conn).Close(); return true })
	})
}

func (p *Proxy) accept(l *listener) {
	defer p.wg.Done()
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				p.log.Warn("accept", "err", err)
			}
			return
		}
		l.conns.Store(c, struct{}{})
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer l.conns.Delete(c)
			p.serveConn(l, c)
		}()
	}
}

// order returns the endpoints to try for a client, best first.
func (p *Proxy) order(l *listener, src netip.Addr) []netip.AddrPort {
	s := l.svc.Load()
	n := len(s.Backends)
	out := make([]netip.AddrPort, n)
	switch p.cfg.Balance {
	case SourceHash:
		type scored struct {
			b     netip.AddrPort
			score uint64
		}
		sc := make([]scored, n)
		for i, b := range s.Backends {
			h := fnv.New64a()
			_, _ = h.Write(src.AsSlice())
			_, _ = h.Write([]byte(b.String()))
			sc[i] = scored{b, h.Sum64()}
		}
		slices.SortFunc(sc, func(a, b scored) int {
			switch {
			case a.score > b.score:
				return -1
			case a.score < b.score:
				return 1
			}
			return a.b.Compare(b.b)
		})
		for i := range sc {
			out[i] = sc[i].b
		}
		return out
	case Random:
		start := rand.IntN(n)
		for i := range n {
			out[i] = s.Backends[(start+i)%n]
		}
	default:
		start := int(l.rr.Add(1)-1) % n
		for i := range n {
			out[i] = s.Backends[(start+i)%n]
		}
	}
	return out
}

// Pick returns the endpoint a client at src is sent to first (for tests
// and diagnostics); false when the port has no listener.
func (p *Proxy) Pick(port uint16, src netip.Addr) (netip.AddrPort, bool) {
	p.mu.Lock()
	l := p.listeners[port]
	p.mu.Unlock()
	if l == nil {
		return netip.AddrPort{}, false
	}
	return p.order(l, src)[0], true
}

func (p *Proxy) serveConn(l *listener, c net.Conn) {
	defer c.Close()
	src := netip.Addr{}
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		src = ap.Addr()
	}
	var errs []error
	for _, b := range p.order(l, src) {
		up, err := p.dial(b)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		p.m.pipe(sideClient, p.bufs, c, up)
		return
	}
	p.m.refused.Inc()
	p.log.Warn("proxied connection refused", "service", l.svc.Load().Name, "client", c.RemoteAddr().String(),
		"err", fmt.Errorf("%w: %w", ErrNoEndpoint, errors.Join(errs...)))
}

// halfCloser is a connection whose write side closes on its own.
type halfCloser interface {
	io.ReadWriteCloser
	CloseWrite() error
}

// dial reaches endpoint b: directly when it is on this node, else through
// the tunnel to the node that holds it.
func (p *Proxy) dial(b netip.AddrPort) (halfCloser, error) {
	ip := b.Addr().Unmap()
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.DialTimeout)
	defer cancel()
	if p.tun.Local(ip) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", b.String())
		if err != nil {
			return nil, fmt.Errorf("dial %s: %w", b, err)
		}
		return c.(*net.TCPConn), nil
	}
	id, ok := p.tun.PeerFor(ip)
	if !ok {
		return nil, fmt.Errorf("%s: %w: no node publishes a network holding it", b, tunnel.ErrNoRoute)
	}
	s, err := p.tun.Open(ctx, id, Protocol)
	if err != nil {
		return nil, fmt.Errorf("%s via %s: %w", b, id, err)
	}
	_ = s.SetDeadline(time.Now().Add(p.cfg.DialTimeout))
	if _, err := io.WriteString(s, b.String()+"\n"); err != nil {
		_ = s.Reset()
		return nil, fmt.Errorf("%s via %s: %w", b, id, err)
	}
	br := bufio.NewReaderSize(s, 256)
	line, err := br.ReadString('\n')
	if err != nil {
		_ = s.Reset()
		return nil, fmt.Errorf("%s via %s: no answer: %w", b, id, err)
	}
	if line != "OK\n" {
		_ = s.Reset()
		return nil, fmt.Errorf("%s via %s: %s", b, id, strings.TrimSpace(strings.TrimPrefix(line, "ERR ")))
	}
	_ = s.SetDeadline(time.Time{})
	return &bufferedStream{Stream: s, r: br}, nil
}

// bufferedStream reads through the reader that consumed the status line.
type bufferedStream struct {
	network.Stream
	r *bufio.Reader
}

func (b *bufferedStream) Read(p []byte) (int, error) { return b.r.Read(p) }

// serveStream is the far side: it dials the endpoint named in the stream's
// first line if it is on this node, answers, and pipes.
func (p *Proxy) serveStream(s network.Stream) {
	_ = s.SetDeadline(time.Now().Add(p.cfg.DialTimeout))
	br := bufio.NewReaderSize(s, 256)
	line, err := br.ReadString('\n')
	if err != nil || len(line) > 64 {
		_ = s.Reset()
		return
	}
	refuse := func(reason string) {
		_, _ = io.WriteString(s, "ERR "+reason+"\n")
		_ = s.Close()
	}
	target, err := netip.ParseAddrPort(strings.TrimSpace(line))
	if err != nil {
		refuse("bad target")
		return
	}
	if !p.tun.Local(target.Addr()) {
		refuse(target.String() + " is not on node " + s.Conn().LocalPeer().String())
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.DialTimeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", target.String())
	if err != nil {
		refuse("dial " + target.String() + ": " + err.Error())
		return
	}
	if _, err := io.WriteString(s, "OK\n"); err != nil {
		_ = c.Close()
		_ = s.Reset()
		return
	}
	_ = s.SetDeadline(time.Time{})
	p.m.pipe(sideEndpoint, p.bufs, &bufferedStream{Stream: s, r: br}, c.(*net.TCPConn))
}

// copyBuf is the buffer of one direction of a proxied connection
// between a TCP connection and a stream: a read of up to 256 KiB from the
// client is one yamux frame and one batched write of TLS records (io.Copy
// would take TCPConn's ReadFrom or WriteTo, whose generic path copies
// through 32 KiB: a frame and a write per 32 KiB). An active connection
// holds two: 512 KiB.
const copyBuf = 256 << 10

// copyConn copies src to dst until src ends. Between two TCP connections
// (an endpoint on this node) it is io.Copy, which splices in the kernel;
// otherwise it goes through a buffer of copyBuf from bufs.
func copyConn(bufs *sync.Pool, dst io.Writer, src io.Reader) int64 {
	_, tcpDst := dst.(*net.TCPConn)
	_, tcpSrc := src.(*net.TCPConn)
	if tcpDst && tcpSrc {
		n, _ := io.Copy(dst, src)
		return n
	}
	buf := bufs.Get().(*[]byte)
	defer bufs.Put(buf)
	// Hide ReaderFrom and WriterTo, so that the copy goes through buf.
	n, _ := io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, *buf)
	return n
}

// newBufs is a pool of copy buffers.
func newBufs() *sync.Pool {
	return &sync.Pool{New: func() any { b := make([]byte, copyBuf); return &b }}
}

// pipe copies both ways between a (the client's side) and b (the
// endpoint's side), through buffers from bufs; when one side ends its
// writes, the other side's write half is closed, and both are closed once
// both directions end. It returns the bytes copied towards the endpoint
// (up) and back (down).
func pipe(bufs *sync.Pool, a io.ReadWriteCloser, b halfCloser) (up, down int64) {
	done := make(chan struct{}, 2)
	cp := func(dst, src io.ReadWriteCloser, n *int64) {
		*n = copyConn(bufs, dst, src)
		if hc, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = hc.CloseWrite()
		} else {
			_ = dst.Close()
		}
		done <- struct{}{}
	}
	go cp(a, b, &down)
	go cp(b, a, &up)
	<-done
	<-done
	_ = a.Close()
	_ = b.Close()
	return up, down
}
