package proxy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/longrunning/meshagent/proxy"
	"github.com/kmep-io/kmep/longrunning/meshagent/tunnel"
	"github.com/kmep-io/kmep/store"
)

var (
	srv      *testenv.Redis
	prefixes atomic.Int64
)

func TestMain(m *testing.M) { testenv.MainWithRedis(m, testenv.RedisOptions{}, &srv) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newStore(t testing.TB) *store.Store {
	t.Helper()
	st, err := store.New(store.Options{Client: srv.Client(t), Prefix: fmt.Sprintf("px%d", prefixes.Add(1))})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// echo serves on addr: it writes back what it reads.
func echo(t testing.TB, addr string) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String())
}

var psk = bytes.Repeat([]byte{7}, 32)

// node starts a tunnel on loopback whose networks are nets.
func node(t testing.TB, st tunnel.Store, key []byte, nets ...string) *tunnel.Tunnel {
	t.Helper()
	return nodeWith(t, st, key, false, nets...)
}

// nodeWith is node, also a libp2p private network with pnet.
func nodeWith(t testing.TB, st tunnel.Store, key []byte, pnet bool, nets ...string) *tunnel.Tunnel {
	t.Helper()
	cfg := tunnel.Config{KeyFile: filepath.Join(t.TempDir(), "key"), PSK: key, PNet: pnet, ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"},
		PeerTTL: 300 * time.Millisecond, DialTimeout: 2 * time.Second, RetryInterval: 50 * time.Millisecond}
	for _, n := range nets {
		cfg.Networks = append(cfg.Networks, netip.MustParsePrefix(n))
	}
	tn, err := tunnel.New(cfg, tunnel.Deps{Store: st, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = tn.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return tn
}

// waitPeers waits until tn knows a peer for each ip.
func waitPeers(t testing.TB, tn *tunnel.Tunnel, ips ...string) {
	t.Helper()
	for i := 0; ; i++ {
		ok := true
		for _, ip := range ips {
			if _, found := tn.PeerFor(netip.MustParseAddr(ip)); !found {
				ok = false
			}
		}
		if ok {
			return
		}
		if i > 500 {
			t.Fatalf("peers for %v not discovered", ips)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// listenIP is where the tests' proxies listen (see TestProxyAcrossNodes).
var listenIP = netip.MustParseAddr("127.0.0.9")

func roundTrip(t testing.TB, addr, msg string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	_ = c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != msg {
		t.Fatalf("echo through %s: %q, %v", addr, got, err)
	}
}

// A TCP service on node B is reached from node A's listener through one
// libp2p stream per connection; a local endpoint is dialed directly.
func TestProxyAcrossNodes(t *testing.T) {
	st := newStore(t)
	a := node(t, st, psk, "127.0.0.3/32")
	b := node(t, st, psk, "127.0.0.2/32")
	remote := echo(t, "127.0.0.2:0")
	local := echo(t, "127.0.0.3:0")
	waitPeers(t, a, "127.0.0.2", "127.0.0.3")

	// The listeners take the endpoints' own ports: on an address of their
	// own, so that no other test's socket on 127.0.0.1 can hold one.
	px, err := proxy.New(proxy.Config{ListenIP: listenIP}, proxy.Deps{Tunnel: a, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	if _, err := proxy.New(proxy.Config{}, proxy.Deps{Tunnel: b, Log: quiet}); err != nil { // B's far side
		t.Fatal(err)
	}
	if err := px.Set([]proxy.Service{
		{Name: "remote", Port: remote.Port(), Backends: []netip.AddrPort{remote}},
		{Name: "local", Port: local.Port(), Backends: []netip.AddrPort{local}},
	}); err != nil {
		t.Fatal(err)
	}
	addrs := px.Addrs()
	for i := range 5 {
		roundTrip(t, addrs[remote.Port()], fmt.Sprintf("hello %d through the tunnel", i))
	}
	roundTrip(t, addrs[local.Port()], "hello next door")
	if !a.Direct(b.ID()) {
		t.Fatal("loopback nodes should be connected directly")
	}

	// A big transfer keeps its bytes.
	c, err := net.Dial("tcp", addrs[remote.Port()])
	if err != nil {
		t.Fatal(err)
	}
	payload := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	go func() { _, _ = c.Write(payload); _ = c.(*net.TCPConn).CloseWrite() }()
	got, err := io.ReadAll(c)
	_ = c.Close()
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("1 MiB echo: %d bytes, %v", len(got), err)
	}

	// An endpoint whose node is gone: the client's connection is closed at once.
	if err := px.Set([]proxy.Service{{Name: "nowhere", Port: remote.Port(), Backends: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.9:9")}}}); err != nil {
		t.Fatal(err)
	}
	c, err = net.Dial("tcp", addrs[remote.Port()])
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("connection to an unroutable endpoint: %d, %v", n, err)
	}
	_ = c.Close()
}

// The far side refuses to dial endpoints outside its own networks: it is
// not an open proxy.
func TestFarSideRefusesForeignTargets(t *testing.T) {
	st := newStore(t)
	a := node(t, st, psk, "127.0.0.3/32")
	b := node(t, st, psk, "127.0.0.2/32")
	if _, err := proxy.New(proxy.Config{}, proxy.Deps{Tunnel: b, Log: quiet}); err != nil {
		t.Fatal(err)
	}
	target := echo(t, "127.0.0.4:0")
	waitPeers(t, a, "127.0.0.2")
	s, err := a.Open(context.Background(), b.ID(), proxy.Protocol)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, _ = io.WriteString(s, target.String()+"\n")
	line, _ := io.ReadAll(s)
	if !bytes.HasPrefix(line, []byte("ERR ")) {
		t.Fatalf("far side answered %q", line)
	}
}

// A peer with another PSK cannot connect: its record is not taken (its
// networks are not proxied to it), and a connection to it, or from it, is
// refused by the gate.
func TestWrongPSKRefused(t *testing.T) {
	st := newStore(t)
	a := node(t, st, psk, "127.0.0.3/32")
	b := node(t, st, bytes.Repeat([]byte{8}, 32), "127.0.0.2/32")
	time.Sleep(time.Second) // both published and read the store three times
	if p, ok := a.PeerFor(netip.MustParseAddr("127.0.0.2")); ok {
		t.Fatalf("A routes 127.0.0.2 to %s, a peer with another PSK", p)
	}
	a.Host().Peerstore().AddAddrs(b.ID(), b.Host().Addrs(), time.Minute)
	_, err := a.Open(context.Background(), b.ID(), proxy.Protocol)
	if !errors.Is(err, tunnel.ErrNoRoute) {
		t.Fatalf("stream across PSKs: %v", err)
	}
	if a.Refused()+b.Refused() == 0 {
		t.Fatal("no gate refused the connection")
	}
	t.Logf("refused: %v", err)
}

// fakeTunnel says every address is local: balancing is all that is tested.
type fakeTunnel struct{}

func (fakeTunnel) PeerFor(netip.Addr) (peer.ID, bool) { return "", false }
func (fakeTunnel) Local(netip.Addr) bool              { return true }
func (fakeTunnel) Open(context.Context, peer.ID, protocol.ID) (network.Stream, error) {
	return nil, errors.New("no tunnel")
}
func (fakeTunnel) Handle(protocol.ID, network.StreamHandler) {}

var _ proxy.Tunnel = fakeTunnel{}

func TestBalance(t *testing.T) {
	backends := []netip.AddrPort{
		netip.MustParseAddrPort("10.0.0.1:80"), netip.MustParseAddrPort("10.0.0.2:80"),
		netip.MustParseAddrPort("10.0.0.3:80"), netip.MustParseAddrPort("10.0.0.4:80"),
	}
	port := uint16(0)
	for _, b := range []proxy.Balance{proxy.RoundRobin, proxy.Random, proxy.SourceHash} {
		t.Run(string(b), func(t *testing.T) {
			px, err := proxy.New(proxy.Config{Balance: b, ListenIP: listenIP}, proxy.Deps{Tunnel: fakeTunnel{}, Log: quiet})
			if err != nil {
				t.Fatal(err)
			}
			defer px.Close()
			p, _ := testenv.FreePort()
			port = uint16(p)
			if err := px.Set([]proxy.Service{{Name: "s", Port: port, Backends: backends}}); err != nil {
				t.Fatal(err)
			}
			seen := map[netip.AddrPort]int{}
			for i := range 400 {
				src := netip.AddrFrom4([4]byte{192, 168, byte(i / 250), byte(i % 250)})
				got, ok := px.Pick(port, src)
				if !ok {
					t.Fatal("no listener")
				}
				seen[got]++
				if b == proxy.SourceHash {
					if again, _ := px.Pick(port, src); again != got {
						t.Fatalf("source hash moved %s from %s to %s", src, got, again)
					}
				}
			}
			if len(seen) != len(backends) {
				t.Fatalf("endpoints used: %v", seen)
			}
			if b == proxy.RoundRobin {
				for _, n := range seen {
					if n != 100 {
						t.Fatalf("round robin uneven: %v", seen)
					}
				}
			}
			if b == proxy.SourceHash {
				// Consistent: removing one endpoint moves only its own clients.
				before := map[netip.Addr]netip.AddrPort{}
				for i := range 400 {
					src := netip.AddrFrom4([4]byte{192, 168, byte(i / 250), byte(i % 250)})
					before[src], _ = px.Pick(port, src)
				}
				if err := px.Set([]proxy.Service{{Name: "s", Port: port, Backends: backends[1:]}}); err != nil {
					t.Fatal(err)
				}
				for src, old := range before {
					now, _ := px.Pick(port, src)
					if old != backends[0] && now != old {
						t.Fatalf("%s moved from %s to %s though its endpoint stayed", src, old, now)
					}
				}
			}
		})
	}
	if _, err := proxy.ParseBalance("least-conn"); err == nil {
		t.Fatal("unknown policy accepted")
	}
}
