package tunnel_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"

	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/longrunning/meshagent/tunnel"
	"github.com/kmep-io/kmep/store"
)

var (
	srv      *testenv.Redis
	prefixes atomic.Int64
	quiet    = slog.New(slog.NewTextHandler(io.Discard, nil))
	psk      = bytes.Repeat([]byte{7}, 32)
)

func TestMain(m *testing.M) { testenv.MainWithRedis(m, testenv.RedisOptions{}, &srv) }

func newStore(t testing.TB) *store.Store {
	t.Helper()
	st, err := store.New(store.Options{Client: srv.Client(t), Prefix: fmt.Sprintf("tn%d", prefixes.Add(1))})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// running is a started tunnel; stop ends its Run (which closes the host).
type running struct {
	*tunnel.Tunnel
	stop func()
}

func start(t testing.TB, st tunnel.Store, cfg tunnel.Config) *running {
	t.Helper()
	if cfg.PSK == nil {
		cfg.PSK = psk
	}
	if cfg.KeyFile == "" {
		cfg.KeyFile = filepath.Join(t.TempDir(), "key")
	}
	if cfg.ListenAddrs == nil {
		cfg.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0"}
	}
	cfg.PeerTTL, cfg.DialTimeout, cfg.RetryInterval = 600*time.Millisecond, 5*time.Second, 50*time.Millisecond
	tn, err := tunnel.New(cfg, tunnel.Deps{Store: st, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = tn.Run(ctx) }()
	stopped := false
	r := &running{Tunnel: tn, stop: func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}}
	t.Cleanup(r.stop)
	return r
}

const echoProto = "/kmep/test/echo/1.0.0"

func serveEcho(tn *running) {
	tn.Handle(echoProto, func(s network.Stream) { defer s.Close(); _, _ = io.Copy(s, s) })
}

func echoOnce(ctx context.Context, from *running, to peer.ID) error {
	s, err := from.Open(ctx, to, echoProto)
	if err != nil {
		return err
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(s, "ping"); err != nil {
		return err
	}
	_ = s.CloseWrite()
	got, err := io.ReadAll(s)
	if err != nil {
		return err
	}
	if string(got) != "ping" {
		return fmt.Errorf("echo %q", got)
	}
	return nil
}

func eventually(t testing.TB, what string, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// relayedPair starts a relay and two nodes, B reachable only through the
// relay (it announces an address where nothing listens), and waits until
// A reaches B through it.
func relayedPair(t testing.TB, st tunnel.Store) (relay, a, b *running, relayCfg tunnel.Config) {
	t.Helper()
	relayCfg = tunnel.Config{Relay: true, KeyFile: filepath.Join(t.TempDir(), "relay.key")}
	relay = start(t, st, relayCfg)
	// The relay comes back on the same address (and key) after a restart.
	relayCfg.ListenAddrs = []string{relay.Host().Addrs()[0].String()}
	a = start(t, st, tunnel.Config{Node: "a"})
	b = start(t, st, tunnel.Config{Node: "b", AnnounceAddrs: []string{"/ip4/127.0.0.1/tcp/1"}})
	serveEcho(b)
	eventually(t, "A reaches B through the relay", func() error {
		return echoOnce(context.Background(), a, b.ID())
	})
	if a.Direct(b.ID()) {
		t.Fatal("A reached B directly; B should be reachable only through the relay")
	}
	return relay, a, b, relayCfg
}

// When the relay carrying the only path to a peer goes away, Open fails at
// once with a RouteError naming the dead path, and works again once the
// relay is back (same key and address) and both nodes hold reservations.
func TestRelayLossFailsFastAndRecovers(t *testing.T) {
	st := newStore(t)
	relay, a, b, relayCfg := relayedPair(t, st)

	relay.stop()
	// The relayed connection closes with the relay's: wait for that (the
	// failure below must not be an old connection's).
	eventually(t, "relayed connection closed", func() error {
		if n := len(a.Host().Network().ConnsToPeer(b.ID())); n > 0 {
			return fmt.Errorf("%d connections to B left", n)
		}
		return nil
	})
	began := time.Now()
	err := echoOnce(context.Background(), a, b.ID())
	took := time.Since(began)
	var re *tunnel.RouteError
	if !errors.As(err, &re) || !errors.Is(err, tunnel.ErrNoRoute) || re.Peer != b.ID() || re.DirectFailed.IsZero() {
		t.Fatalf("open with the relay down: %v (want a RouteError for B with its failed direct path)", err)
	}
	t.Logf("relay down: Open failed after %s: %v", took, err)

	relay = start(t, st, relayCfg)
	if relay.ID() == "" {
		t.Fatal("relay restart")
	}
	eventually(t, "A reaches B through the restarted relay", func() error {
		return echoOnce(context.Background(), a, b.ID())
	})
}

func TestRouteErrorText(t *testing.T) {
	p, r := peer.ID("peerB"), peer.ID("relay1")
	for _, tc := range []struct {
		name string
		err  *tunnel.RouteError
		want []string
	}{
		{"relays down, direct failed", &tunnel.RouteError{Peer: p, RelaysDown: []peer.ID{r}, DirectFailed: time.Now().Add(-time.Second)},
			[]string{"unreachable", "relays are down (" + r.String() + ")", "direct path failed 1s ago"}},
		{"no relay, no direct address", &tunnel.RouteError{Peer: p},
			[]string{"no relay route", "publishes no direct address"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := tc.err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Fatalf("%q lacks %q", msg, w)
				}
			}
			if !errors.Is(fmt.Errorf("wrapped: %w", tc.err), tunnel.ErrNoRoute) {
				t.Fatal("not ErrNoRoute")
			}
		})
	}
}

// A peer never reached directly, with no relay up, gets DirectDialTimeout:
// here its direct address refuses at once, so Open fails without waiting,
// and the next Open fails with a RouteError without dialing.
func TestDirectOnlyPeerUnreachable(t *testing.T) {
	st := newStore(t)
	a := start(t, st, tunnel.Config{Node: "a"})
	b := start(t, st, tunnel.Config{Node: "b", AnnounceAddrs: []string{"/ip4/127.0.0.1/tcp/1"}})
	eventually(t, "A knows B", func() error {
		if len(a.Host().Peerstore().Addrs(b.ID())) == 0 {
			return errors.New("no address for B yet")
		}
		return nil
	})
	err := echoOnce(context.Background(), a, b.ID())
	var re *tunnel.RouteError
	if !errors.Is(err, tunnel.ErrNoRoute) || errors.As(err, &re) {
		t.Fatalf("first open: %v (want a dial failure)", err)
	}
	err = echoOnce(context.Background(), a, b.ID())
	if !errors.As(err, &re) || re.DirectFailed.IsZero() {
		t.Fatalf("second open: %v (want a RouteError)", err)
	}
}

// BenchmarkOpenRelayDown measures how long Open takes to fail for a peer
// whose relay went away (its direct path failed before).
func BenchmarkOpenRelayDown(b *testing.B) {
	st := newStore(b)
	relay, a, pb, _ := relayedPair(b, st)
	relay.stop()
	eventually(b, "relayed connection closed", func() error {
		if len(a.Host().Network().ConnsToPeer(pb.ID())) > 0 {
			return errors.New("still connected")
		}
		return nil
	})
	b.ResetTimer()
	for range b.N {
		if _, err := a.Open(context.Background(), pb.ID(), echoProto); !errors.Is(err, tunnel.ErrNoRoute) {
			b.Fatalf("open: %v", err)
		}
	}
}

// A peer without the mesh secret is refused once the TLS handshake has
// told who it is: another mesh's node (its record signed with another
// secret), and a bare libp2p host whose unsigned or forged record someone
// with access to the store put there. A node with the secret is admitted
// (found in the store at once: the gate reads it on a miss).
func TestPeerWithoutSecretRefused(t *testing.T) {
	st := newStore(t)
	ctx := context.Background()
	a := start(t, st, tunnel.Config{Node: "a"})
	serveEcho(a)
	aInfo := peer.AddrInfo{ID: a.ID(), Addrs: a.Host().Addrs()}

	b := start(t, st, tunnel.Config{Node: "b"})
	eventually(t, "a member reaches A", func() error { return echoOnce(ctx, b, a.ID()) })

	other := start(t, st, tunnel.Config{Node: "other", PSK: bytes.Repeat([]byte{9}, 32)})
	bare, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Security(libp2ptls.ID, libp2ptls.New), libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	defer bare.Close()
	forged := tunnel.SignRecord(bytes.Repeat([]byte{1}, 32), store.MeshPeer{ID: bare.ID().String(), Node: "forged",
		Addrs: []string{bare.Addrs()[0].String()}}, time.Now().Add(time.Minute))
	if err := st.PutMeshPeer(ctx, forged, time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		h    host.Host
	}{{"another mesh's node", other.Host()}, {"a bare libp2p host with a forged record", bare}} {
		t.Run(c.name, func(t *testing.T) {
			before := a.Refused()
			cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			err := c.h.Connect(cctx, aInfo)
			if err == nil {
				// The handshake may finish on this side before A's gate
				// closes the connection: no stream gets through.
				_, err = c.h.NewStream(cctx, a.ID(), echoProto)
			}
			if err == nil {
				t.Fatal("a peer without the secret opened a stream to A")
			}
			eventually(t, "A's gate refused it", func() error {
				if a.Refused() == before {
					return errors.New("not refused by A's gate")
				}
				return nil
			})
			t.Logf("refused: %v", err)
		})
	}
	if a.Host().Network().Connectedness(other.ID()) == network.Connected || a.Host().Network().Connectedness(bare.ID()) == network.Connected {
		t.Fatal("A is connected to a peer without the secret")
	}
}

// With PNet the mesh also is a libp2p private network (swarm.key
// compatibility); its nodes reach each other as before.
func TestPNetOption(t *testing.T) {
	st := newStore(t)
	a := start(t, st, tunnel.Config{Node: "a", PNet: true})
	b := start(t, st, tunnel.Config{Node: "b", PNet: true})
	serveEcho(b)
	eventually(t, "A reaches B in the private network", func() error { return echoOnce(context.Background(), a, b.ID()) })
	if _, err := tunnel.New(tunnel.Config{KeyFile: filepath.Join(t.TempDir(), "k"), PNet: true}, tunnel.Deps{Store: st}); err == nil {
		t.Fatal("PNet without a PSK accepted")
	}
}

// A record verifies under its secret only, unaltered and before its
// signed expiry (plus the allowed skew).
func TestRecordSignature(t *testing.T) {
	rec := store.MeshPeer{ID: "12D3KooWA", Node: "a", Addrs: []string{"/ip4/10.0.0.1/tcp/4001"}, Networks: []string{"10.0.0.0/24"}}
	now := time.Now()
	signed := tunnel.SignRecord(psk, rec, now.Add(time.Minute))
	if err := tunnel.VerifyRecord(psk, signed, now, 0); err != nil {
		t.Fatal(err)
	}
	altered := signed
	altered.Networks = []string{"0.0.0.0/0"}
	for name, c := range map[string]struct {
		rec    store.MeshPeer
		secret []byte
		at     time.Time
	}{
		"unsigned": {rec, psk, now}, "another secret": {signed, bytes.Repeat([]byte{8}, 32), now},
		"altered": {altered, psk, now}, "expired": {signed, psk, now.Add(2 * time.Minute)},
	} {
		if err := tunnel.VerifyRecord(c.secret, c.rec, c.at, 30*time.Second); !errors.Is(err, tunnel.ErrBadRecord) {
			t.Errorf("%s: %v, want ErrBadRecord", name, err)
		}
	}
	if err := tunnel.VerifyRecord(psk, signed, now.Add(80*time.Second), 30*time.Second); err != nil {
		t.Errorf("within the skew: %v", err)
	}
}

// bulkEcho sends n random bytes to the echo service of peer to and
// checks that the same come back (written and read at once, so both
// directions carry full frames of batched records together).
func bulkEcho(ctx context.Context, from *running, to peer.ID, n int) error {
	s, err := from.Open(ctx, to, echoProto)
	if err != nil {
		return err
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(20 * time.Second))
	payload := make([]byte, n)
	_, _ = rand.Read(payload)
	errc := make(chan error, 1)
	go func() {
		_, err := s.Write(payload)
		if err == nil {
			err = s.CloseWrite()
		}
		errc <- err
	}()
	got, err := io.ReadAll(s)
	if werr := <-errc; werr != nil {
		return fmt.Errorf("write: %w", werr)
	}
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if !bytes.Equal(got, payload) {
		return fmt.Errorf("echo of %d bytes: %d bytes back, not the same", n, len(got))
	}
	return nil
}

// Bulk bytes keep their order and content over a direct connection and
// over a relayed one (the relay's stream under TLS and yamux).
func TestBulkEcho(t *testing.T) {
	st := newStore(t)
	_, a, b, _ := relayedPair(t, st)
	c := start(t, st, tunnel.Config{Node: "c"})
	serveEcho(c)
	eventually(t, "A reaches C", func() error { return echoOnce(context.Background(), a, c.ID()) })
	for _, tc := range []struct {
		name string
		to   *running
	}{{"direct", c}, {"relayed", b}} {
		t.Run(tc.name, func(t *testing.T) {
			if err := bulkEcho(context.Background(), a, tc.to.ID(), 5<<20+123); err != nil {
				t.Fatal(err)
			}
			if got := a.Direct(tc.to.ID()); got != (tc.name == "direct") {
				t.Fatalf("Direct = %v", got)
			}
		})
	}
}
