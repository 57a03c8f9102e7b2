// Package tunnel is the mesh agent's libp2p host: the link between edge
// nodes on different networks. Each node's identity is an Ed25519 key
// generated once and kept in a file (never derived from the node name).
// TLS 1.3 (AES-GCM) is the only encryption of tunnel bytes; its records
// are handed to the connection in batches, and yamux (the muxer) sends
// frames of up to 1 MiB, so a bulk transfer costs few writes and segments
// per byte. Nodes of one
// mesh share a secret (the PSK): each signs its peer record with it
// (SignRecord), and the host's ConnectionGater admits a peer, once the TLS
// handshake has authenticated its peer ID, only if the store holds a
// record of that ID signed with the secret; so a peer without the secret
// is refused, as with libp2p's private network, without XSalsa20 on every
// byte on top of TLS. Config.PNet adds that private network back (swarm.key
// compatibility). With a secret the only transport is TCP; without one
// (an open mesh, for development) QUIC is added.
//
// Designated relay nodes run a circuit relay v2 service whose limits are
// sized for long-lived proxied streams (no duration or byte limit). Every
// node keeps a reservation on each relay it finds, and publishes its direct
// and relayed addresses in the store with a TTL; peers find each other
// there, not in a public DHT. Hole punching (DCUtR) and AutoNAT are on, so
// a relayed connection is upgraded to a direct one where the NATs allow it.
package tunnel

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	"github.com/libp2p/go-libp2p/core/protocol"
	libp2pyamux "github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"
	"github.com/libp2p/go-libp2p/p2p/protocol/identify"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/kmep-io/kmep/store"
)

// Store is where peers publish themselves and find each other.
type Store interface {
	PutMeshPeer(ctx context.Context, p store.MeshPeer, ttl time.Duration) error
	MeshPeers(ctx context.Context) ([]store.MeshPeer, error)
	DeleteMeshPeer(ctx context.Context, id string) error
}

var _ Store = (*store.Store)(nil)

// ErrNoRoute is returned (wrapped) by Open when the peer cannot be reached
// directly or through any relay.
var ErrNoRoute = errors.New("tunnel: peer unreachable")

// RouteError is the ErrNoRoute that Open returns at once, without dialing,
// when every way to a peer is known to be down: the relays through which
// it published circuit addresses are not connected to this node (or hold
// no reservation of it), and its direct addresses failed since the last
// direct connection (or it has none).
type RouteError struct {
	// Peer is the peer that cannot be reached.
	Peer peer.ID
	// RelaysDown are the relays the peer is reachable through, all down.
	RelaysDown []peer.ID
	// DirectFailed is when a direct dial (or a connect that ended on a
	// relayed connection only) last failed; zero when the peer publishes
	// no direct address.
	DirectFailed time.Time
}

func (e *RouteError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "tunnel: peer %s unreachable: ", e.Peer)
	switch len(e.RelaysDown) {
	case 0:
		b.WriteString("no relay route")
	default:
		b.WriteString("its relays are down (")
		for i, r := range e.RelaysDown {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(r.String())
		}
		b.WriteString(")")
	}
	if e.DirectFailed.IsZero() {
		b.WriteString(" and it publishes no direct address")
	} else {
		fmt.Fprintf(&b, " and its direct path failed %s ago", time.Since(e.DirectFailed).Round(time.Millisecond))
	}
	return b.String()
}

// Is makes errors.Is(err, ErrNoRoute) true for a RouteError.
func (e *RouteError) Is(target error) bool { return target == ErrNoRoute }

// Config configures a Tunnel.
type Config struct {
	// KeyFile holds the node's identity key; it is created (mode 0600) with
	// a new Ed25519 key when missing. Required.
	KeyFile string
	// PSK is the mesh secret, 32 bytes (see ParsePSK): peer records are
	// signed with it and only peers with a record signed with it are
	// admitted. Zero value: an open mesh (every peer admitted, records
	// unsigned), and QUIC is also used.
	PSK []byte
	// PNet also makes the host a libp2p private network with PSK as its
	// key (every byte encrypted with XSalsa20 under TLS, as before the
	// gate; peers must agree on it). Zero value: off.
	PNet bool
	// ListenAddrs are multiaddrs to listen on. Zero value:
	// /ip4/0.0.0.0/tcp/4001 (and /ip4/0.0.0.0/udp/4001/quic-v1 without PSK).
	ListenAddrs []string
	// AnnounceAddrs, when set, are published instead of the listen
	// addresses (a node behind a port forward announces the forward).
	AnnounceAddrs []string
	// Relay makes this node a relay (circuit v2 service).
	Relay bool
	// Node is the node name published with the record (informational).
	Node string
	// Networks are the IP prefixes whose endpoints this node reaches
	// directly (published for the service proxy).
	Networks []netip.Prefix
	// PeerTTL is the lifetime of the published record; it is refreshed
	// every PeerTTL/3, and the peer list re-read as often. Zero value: 30 s.
	PeerTTL time.Duration
	// DialTimeout bounds connecting to a peer in Open. Zero value: 5 s.
	DialTimeout time.Duration
	// DirectDialTimeout bounds connecting to a peer in Open when none of
	// its relays is up, so only its direct addresses can answer. Zero
	// value: 1 s (at most DialTimeout).
	DirectDialTimeout time.Duration
	// RetryInterval is how soon a failed relay reservation is retried.
	// Zero value: 1 s.
	RetryInterval time.Duration
}

// Deps are the Tunnel's dependencies.
type Deps struct {
	// Store publishes and lists peers. Required.
	Store Store
	// Log is the logger. Zero value: slog.Default().
	Log *slog.Logger
}

// Tunnel is a running libp2p host. Run it once; it closes the host when
// Run returns.
type Tunnel struct {
	cfg   Config
	store Store
	log   *slog.Logger
	h     host.Host
	self  peer.ID

	// kick wakes Run to renew reservations at once (a relay went away).
	kick chan struct{}
	// hp is the DCUtR service (ours, not the host's, so that Run can
	// retry a hole punch the host would try once only), idSub the
	// identify events that tell it our observed addresses.
	hp        *holepunch.Service
	idSub     event.Subscription
	bg        sync.WaitGroup
	closeOnce sync.Once

	mu     sync.Mutex
	peers  map[peer.ID]store.MeshPeer
	relays map[peer.ID]*client.Reservation
	// directFailed holds, per peer, when reaching it directly last failed:
	// a direct dial that failed, or a connect that ended on a relayed
	// connection only. A direct connection clears it.
	directFailed map[peer.ID]time.Time
	// observed is this node's address as each connected peer sees it
	// (public ones only): what hole punching dials from.
	observed map[peer.ID]ma.Multiaddr
	// punched is when a hole punch to a peer was last started.
	punched map[peer.ID]time.Time
	// badRecords holds the signature last logged as bad, per peer ID.
	badRecords map[string]string

	// refused counts the connections the gate refused.
	refused atomic.Uint64
}

// LoadOrCreateKey reads the identity key in path, or generates an Ed25519
// key and writes it there (mode 0600, atomically) when the file is missing.
func LoadOrCreateKey(path string) (crypto.PrivKey, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		k, err := crypto.UnmarshalPrivateKey(b)
		if err != nil {
			return nil, fmt.Errorf("tunnel: identity key %s: %w", path, err)
		}
		return k, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("tunnel: identity key: %w", err)
	}
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, err
	}
	b, err = crypto.MarshalPrivateKey(k)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("tunnel: identity key: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".key-*")
	if err != nil {
		return nil, fmt.Errorf("tunnel: identity key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		_ = tmp.Close()
		return nil, fmt.Errorf("tunnel: identity key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("tunnel: identity key: %w", err)
	}
	// Link fails when another replica created the key meanwhile: use that one.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return LoadOrCreateKey(path)
		}
		return nil, fmt.Errorf("tunnel: identity key: %w", err)
	}
	return k, nil
}

// ParsePSK reads a pre-shared key: 64 hex digits, or a swarm.key file's
// content ("/key/swarm/psk/1.0.0/", "/base16/", the key).
func ParsePSK(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "/key/swarm/psk/1.0.0/") {
		k, err := pnet.DecodeV1PSK(strings.NewReader(s))
		if err != nil {
			return nil, fmt.Errorf("tunnel: PSK: %w", err)
		}
		return k, nil
	}
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 32 {
		return nil, errors.New("tunnel: PSK must be 64 hex digits or a swarm.key")
	}
	return b, nil
}

// relayResources are the relay's limits, sized for proxied connections
// that last hours and move gigabytes: no duration or data limit per
// circuit, many circuits per peer, a 64 KiB copy buffer.
func relayResources() relay.Resources {
	r := relay.DefaultResources()
	r.Limit = nil
	r.MaxCircuits = 1024
	r.MaxReservations = 1024
	r.MaxReservationsPerIP = 64 // nodes behind one NAT share an address
	r.MaxReservationsPerASN = 1024
	r.BufferSize = 64 << 10
	return r
}

// New loads (or creates) the identity key and starts the libp2p host
// listening. Run must be called to publish it and find peers.
func New(cfg Config, deps Deps) (*Tunnel, error) {
	if deps.Store == nil {
		return nil, errors.New("tunnel: Deps.Store is required")
	}
	if cfg.KeyFile == "" {
		return nil, errors.New("tunnel: Config.KeyFile is required")
	}
	if cfg.PSK != nil && len(cfg.PSK) != 32 {
		return nil, fmt.Errorf("tunnel: PSK is %d bytes, want 32", len(cfg.PSK))
	}
	if cfg.PNet && cfg.PSK == nil {
		return nil, errors.New("tunnel: PNet needs a PSK")
	}
	if cfg.PeerTTL == 0 {
		cfg.PeerTTL = 30 * time.Second
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.RetryInterval == 0 {
		cfg.RetryInterval = time.Second
	}
	if cfg.DirectDialTimeout == 0 {
		cfg.DirectDialTimeout = min(time.Second, cfg.DialTimeout)
	}
	if cfg.PeerTTL < 3*time.Millisecond || cfg.DialTimeout < 0 || cfg.RetryInterval < 0 || cfg.DirectDialTimeout < 0 {
		return nil, errors.New("tunnel: PeerTTL, DialTimeout, DirectDialTimeout and RetryInterval must be positive")
	}
	key, err := LoadOrCreateKey(cfg.KeyFile)
	if err != nil {
		return nil, err
	}
	listen := cfg.ListenAddrs
	if len(listen) == 0 {
		listen = []string{"/ip4/0.0.0.0/tcp/4001"}
		if cfg.PSK == nil {
			listen = append(listen, "/ip4/0.0.0.0/udp/4001/quic-v1")
		}
	}
	t := &Tunnel{cfg: cfg, store: deps.Store, log: deps.Log, kick: make(chan struct{}, 1),
		peers: map[peer.ID]store.MeshPeer{}, relays: map[peer.ID]*client.Reservation{},
		directFailed: map[peer.ID]time.Time{}, observed: map[peer.ID]ma.Multiaddr{}, punched: map[peer.ID]time.Time{},
		badRecords: map[string]string{}}
	if t.log == nil {
		t.log = slog.Default()
	}
	if t.self, err = peer.IDFromPrivateKey(key); err != nil {
		return nil, fmt.Errorf("tunnel: identity key: %w", err)
	}
	opts := []libp2p.Option{
		libp2p.Identity(key),
		libp2p.ListenAddrStrings(listen...),
		libp2p.Transport(tcp.NewTCPTransport),
		// TLS 1.3 only: AES-GCM runs on the CPU's AES instructions (the
		// profile of a proxied bulk transfer shows it at a third of the
		// PSK's XSalsa20); Noise's ChaCha20-Poly1305 would cost more, and
		// every node of a mesh runs this same code. Its records are
		// written in batches and yamux sends frames of up to 1 MiB (see
		// security.go): per byte, fewer writes and segments.
		libp2p.Security(libp2ptls.ID, newBatchedTLS),
		libp2p.Muxer(libp2pyamux.ID, muxer()),
		libp2p.EnableRelay(),
		libp2p.EnableNATService(),
		libp2p.DisableMetrics(),
	}
	switch {
	case cfg.PSK == nil:
		opts = append(opts, libp2p.Transport(quic.NewTransport))
	case cfg.PNet:
		opts = append(opts, libp2p.PrivateNetwork(pnet.PSK(cfg.PSK)), libp2p.ConnectionGater(&gate{t: t}))
	default:
		opts = append(opts, libp2p.ConnectionGater(&gate{t: t}))
	}
	if len(cfg.AnnounceAddrs) > 0 {
		ann := make([]ma.Multiaddr, 0, len(cfg.AnnounceAddrs))
		for _, s := range cfg.AnnounceAddrs {
			a, err := ma.NewMultiaddr(s)
			if err != nil {
				return nil, fmt.Errorf("tunnel: announce address %q: %w", s, err)
			}
			ann = append(ann, a)
		}
		opts = append(opts, libp2p.AddrsFactory(func([]ma.Multiaddr) []ma.Multiaddr { return ann }))
	}
	if cfg.Relay {
		// A designated relay serves circuits whatever AutoNAT thinks of its
		// reachability, and for peers on private networks too.
		opts = append(opts, libp2p.ForceReachabilityPublic(),
			libp2p.EnableRelayService(relay.WithResources(relayResources()),
				relay.WithReservationAddressFilter(func(ma.Multiaddr) bool { return true })))
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("tunnel: start libp2p host: %w", err)
	}
	t.h = h
	ids, ok := h.(interface{ IDService() identify.IDService })
	if !ok {
		_ = h.Close()
		return nil, fmt.Errorf("tunnel: libp2p host %T has no identify service", h)
	}
	if t.idSub, err = h.EventBus().Subscribe(new(event.EvtPeerIdentificationCompleted)); err != nil {
		_ = h.Close()
		return nil, fmt.Errorf("tunnel: identify events: %w", err)
	}
	if t.hp, err = holepunch.NewService(h, ids.IDService(), t.holePunchAddrs); err != nil {
		_ = t.idSub.Close()
		_ = h.Close()
		return nil, fmt.Errorf("tunnel: hole punching: %w", err)
	}
	t.bg.Add(1)
	go t.observe()
	h.Network().Notify(&network.NotifyBundle{ConnectedF: t.connected, DisconnectedF: t.disconnected})
	return t, nil
}

// observe records the address each peer saw this node's connection come
// from, when it is public: behind a NAT that keeps ports, that is where
// a hole punch can reach this node.
func (t *Tunnel) observe() {
	defer t.bg.Done()
	for e := range t.idSub.Out() {
		ev, ok := e.(event.EvtPeerIdentificationCompleted)
		if !ok || ev.ObservedAddr == nil || ev.Conn == nil || isRelayed(ev.Conn.RemoteMultiaddr()) ||
			!manet.IsPublicAddr(ev.ObservedAddr) {
			continue
		}
		t.mu.Lock()
		t.observed[ev.Peer] = ev.ObservedAddr
		t.mu.Unlock()
	}
}

// holePunchAddrs are this node's public addresses: its own (announced or
// listened on) and those its peers observed.
func (t *Tunnel) holePunchAddrs() []ma.Multiaddr {
	var out []ma.Multiaddr
	for _, a := range t.h.Addrs() {
		if !isRelayed(a) && manet.IsPublicAddr(a) {
			out = append(out, a)
		}
	}
	t.mu.Lock()
	for _, a := range t.observed {
		out = append(out, a)
	}
	t.mu.Unlock()
	return ma.Unique(out)
}

// punch starts DCUtR towards each peer this node reaches through a relay
// only and that connected to it (the side that received the relayed
// connection leads a hole punch); libp2p does that once per relayed
// connection, and not at all before this node knows a public address of
// its own, so it is retried here every PeerTTL.
func (t *Tunnel) punch(ctx context.Context) {
	for _, id := range t.h.Network().Peers() {
		inbound, direct := false, false
		for _, c := range t.h.Network().ConnsToPeer(id) {
			if !isRelayed(c.RemoteMultiaddr()) {
				direct = true
			} else if c.Stat().Direction == network.DirInbound {
				inbound = true
			}
		}
		if direct || !inbound {
			continue
		}
		if len(t.holePunchAddrs()) == 0 {
			continue // DirectConnect would wait for one
		}
		t.mu.Lock()
		_, mesh := t.peers[id]
		last, tried := t.punched[id]
		if !mesh || tried && time.Since(last) < t.cfg.PeerTTL {
			t.mu.Unlock()
			continue
		}
		t.punched[id] = time.Now()
		t.mu.Unlock()
		t.bg.Add(1)
		go func() {
			defer t.bg.Done()
			if err := t.hp.DirectConnect(id); err != nil && ctx.Err() == nil {
				t.log.Debug("hole punch failed", "peer", id.String(), "err", err)
			}
		}()
	}
}

// shutdown closes the host and the hole punching service, once.
func (t *Tunnel) shutdown() error {
	var err error
	t.closeOnce.Do(func() {
		_ = t.hp.Close()
		err = t.h.Close()
		_ = t.idSub.Close()
		t.bg.Wait()
	})
	return err
}

// connected clears a peer's failed direct path when a direct connection
// to it appears (a port forward, a hole punch), and logs it when it
// replaces a relayed one.
func (t *Tunnel) connected(n network.Network, c network.Conn) {
	if isRelayed(c.RemoteMultiaddr()) {
		return
	}
	id := c.RemotePeer()
	relayed := false
	for _, o := range n.ConnsToPeer(id) {
		relayed = relayed || isRelayed(o.RemoteMultiaddr())
	}
	t.mu.Lock()
	_, failed := t.directFailed[id]
	delete(t.directFailed, id)
	t.mu.Unlock()
	if failed || relayed {
		t.log.Info("direct connection to a peer reached through a relay", "peer", id.String(),
			"addr", c.RemoteMultiaddr().String(), "direction", c.Stat().Direction.String())
	}
}

// disconnected marks a relay down as soon as its last connection closes:
// Open stops counting on it, and Run renews the reservation at once. The
// relayed connections through it close with it, which resets their
// streams (the proxied connections end).
func (t *Tunnel) disconnected(n network.Network, c network.Conn) {
	id := c.RemotePeer()
	if n.Connectedness(id) == network.Connected {
		return
	}
	t.mu.Lock()
	_, held := t.relays[id]
	delete(t.relays, id)
	delete(t.observed, id)
	delete(t.punched, id)
	t.mu.Unlock()
	if held {
		t.log.Warn("relay connection lost", "relay", id.String())
		select {
		case t.kick <- struct{}{}:
		default:
		}
	}
}

func isRelayed(a ma.Multiaddr) bool {
	_, err := a.ValueForProtocol(ma.P_CIRCUIT)
	return err == nil
}

// Host is the libp2p host (for handlers and tests).
func (t *Tunnel) Host() host.Host { return t.h }

// ID is this node's peer ID.
func (t *Tunnel) ID() peer.ID { return t.h.ID() }

// Handle registers a stream handler for a protocol.
func (t *Tunnel) Handle(p protocol.ID, fn network.StreamHandler) { t.h.SetStreamHandler(p, fn) }

// Close closes the host (Run does it on return; Close is for a Tunnel
// whose Run was never called).
func (t *Tunnel) Close() error { return t.shutdown() }

// Run publishes this node, keeps relay reservations and follows the peer
// list until ctx ends; then it withdraws the record and closes the host.
func (t *Tunnel) Run(ctx context.Context) error {
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := t.store.DeleteMeshPeer(dctx, t.ID().String()); err != nil {
			t.log.Warn("withdraw mesh peer record", "err", err)
		}
		_ = t.shutdown()
	}()
	t.log.Info("tunnel up", "peer", t.ID().String(), "addrs", t.h.Addrs(), "relay", t.cfg.Relay,
		"gate", t.cfg.PSK != nil, "pnet", t.cfg.PNet)
	refresh := t.cfg.PeerTTL / 3
	for {
		wait := refresh
		if err := t.sync(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			t.log.Warn("mesh peer sync failed", "err", err)
			wait = min(refresh, t.cfg.RetryInterval)
		}
		if t.missingReservations() {
			wait = min(wait, t.cfg.RetryInterval)
		}
		t.punch(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.kick:
		case <-time.After(wait):
		}
	}
}

func (t *Tunnel) missingReservations() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, p := range t.peers {
		if p.Relay && id != t.ID() {
			if r := t.relays[id]; r == nil || time.Until(r.Expiration) < t.cfg.PeerTTL ||
				t.h.Network().Connectedness(id) != network.Connected {
				return true
			}
		}
	}
	return false
}

// loadPeers reads the peer records and keeps, as the mesh's members, those
// signed with the mesh secret (every record in an open mesh).
func (t *Tunnel) loadPeers(ctx context.Context) (map[peer.ID]store.MeshPeer, error) {
	list, err := t.store.MeshPeers(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	peers := make(map[peer.ID]store.MeshPeer, len(list))
	for _, p := range list {
		id, err := peer.Decode(p.ID)
		if err != nil {
			t.log.Warn("mesh peer record with a bad id", "id", p.ID, "err", err)
			continue
		}
		if t.cfg.PSK != nil {
			if err := VerifyRecord(t.cfg.PSK, p, now, t.cfg.PeerTTL); err != nil {
				t.mu.Lock()
				logged := t.badRecords[p.ID] == p.Sig
				t.badRecords[p.ID] = p.Sig
				t.mu.Unlock()
				if !logged {
					t.log.Warn("mesh peer record not signed with the mesh secret: ignored, the peer is refused",
						"peer", p.ID, "node", p.Node, "err", err)
				}
				continue
			}
		}
		peers[id] = p
	}
	t.mu.Lock()
	t.peers = peers
	t.mu.Unlock()
	return peers, nil
}

// member reports whether p has a record signed with the mesh secret (any
// record, in an open mesh).
func (t *Tunnel) member(p peer.ID) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.peers[p]
	return ok
}

// Refused is how many connections the gate refused (peers without a
// record signed with the mesh secret).
func (t *Tunnel) Refused() uint64 { return t.refused.Load() }

// publish puts this node's record, signed, in the store.
func (t *Tunnel) publish(ctx context.Context) error {
	rec := t.record()
	if t.cfg.PSK != nil {
		rec = SignRecord(t.cfg.PSK, rec, time.Now().Add(t.cfg.PeerTTL))
	}
	return t.store.PutMeshPeer(ctx, rec, t.cfg.PeerTTL)
}

// sync reads the peers, publishes this node (first: relays and peers
// admit it once its signed record is in the store) and renews relay
// reservations, publishing again when they changed.
func (t *Tunnel) sync(ctx context.Context) error {
	peers, err := t.loadPeers(ctx)
	if err != nil {
		return err
	}
	for id, p := range peers {
		if id == t.ID() {
			continue
		}
		if addrs := parseAddrs(p.Addrs); len(addrs) > 0 {
			t.h.Peerstore().AddAddrs(id, addrs, t.cfg.PeerTTL)
		}
	}
	if err := t.publish(ctx); err != nil {
		return err
	}
	changed := false
	for id, p := range peers {
		if !p.Relay || id == t.ID() {
			continue
		}
		t.mu.Lock()
		r := t.relays[id]
		t.mu.Unlock()
		if r != nil && time.Until(r.Expiration) > t.cfg.PeerTTL && t.h.Network().Connectedness(id) == network.Connected {
			continue
		}
		// A relay that was down is dialed again now, not after the swarm's
		// dial backoff (5 s and growing), so it is used as soon as it is back.
		if sw, ok := t.h.Network().(*swarm.Swarm); ok {
			sw.Backoff().Clear(id)
		}
		rctx, cancel := context.WithTimeout(ctx, t.cfg.DialTimeout)
		res, err := client.Reserve(rctx, t.h, peer.AddrInfo{ID: id, Addrs: parseAddrs(p.Addrs)})
		cancel()
		t.mu.Lock()
		if err != nil {
			delete(t.relays, id)
			t.log.Warn("relay reservation failed", "relay", id.String(), "err", err)
		} else {
			if r == nil {
				t.log.Info("relay reservation", "relay", id.String(), "expires", res.Expiration)
			}
			t.relays[id] = res
			changed = true
		}
		t.mu.Unlock()
	}
	if changed {
		return t.publish(ctx)
	}
	return nil
}

// record is what this node publishes: its own addresses, and a circuit
// address through each relay it holds a reservation on.
func (t *Tunnel) record() store.MeshPeer {
	rec := store.MeshPeer{ID: t.ID().String(), Node: t.cfg.Node, Relay: t.cfg.Relay}
	for _, a := range t.h.Addrs() {
		rec.Addrs = append(rec.Addrs, a.String())
	}
	for _, n := range t.cfg.Networks {
		rec.Networks = append(rec.Networks, n.String())
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, r := range t.relays {
		if time.Now().After(r.Expiration) {
			continue
		}
		for _, a := range parseAddrs(t.peers[id].Addrs) {
			rec.Addrs = append(rec.Addrs, a.String()+"/p2p/"+id.String()+"/p2p-circuit")
		}
	}
	return rec
}

func parseAddrs(ss []string) []ma.Multiaddr {
	out := make([]ma.Multiaddr, 0, len(ss))
	for _, s := range ss {
		if a, err := ma.NewMultiaddr(s); err == nil {
			out = append(out, a)
		}
	}
	return out
}

// PeerFor returns the peer whose published networks contain ip (the most
// specific prefix wins; ties go to the smaller peer ID).
func (t *Tunnel) PeerFor(ip netip.Addr) (peer.ID, bool) {
	ip = ip.Unmap()
	t.mu.Lock()
	defer t.mu.Unlock()
	best, bits := peer.ID(""), -1
	for id, p := range t.peers {
		for _, s := range p.Networks {
			pfx, err := netip.ParsePrefix(s)
			if err != nil || !pfx.Contains(ip) {
				continue
			}
			if pfx.Bits() > bits || pfx.Bits() == bits && id < best {
				best, bits = id, pfx.Bits()
			}
		}
	}
	return best, bits >= 0
}

// Local reports whether ip is inside this node's own networks.
func (t *Tunnel) Local(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range t.cfg.Networks {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// Open opens a stream of protocol p to peer id over an existing
// connection, or connects first (directly or through a relay, whichever
// the swarm reaches) within DialTimeout. When none of the peer's relays is
// up it only waits DirectDialTimeout, and when its direct path also failed
// since the last direct connection it fails at once with a *RouteError.
// Every failure is ErrNoRoute (wrapped).
func (t *Tunnel) Open(ctx context.Context, id peer.ID, p protocol.ID) (network.Stream, error) {
	ctx = network.WithAllowLimitedConn(ctx, "mesh proxy")
	if len(t.h.Network().ConnsToPeer(id)) == 0 {
		timeout, err := t.route(id)
		if err != nil {
			return nil, err
		}
		cctx, cancel := context.WithTimeout(ctx, timeout)
		err = t.h.Connect(cctx, peer.AddrInfo{ID: id})
		cancel()
		if err != nil || !t.Direct(id) {
			// Only a relay answered (or nothing did): the direct path is
			// down until a direct connection appears.
			t.mu.Lock()
			t.directFailed[id] = time.Now()
			t.mu.Unlock()
		}
		if err != nil {
			return nil, fmt.Errorf("%w: connect %s: %w", ErrNoRoute, id, err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, t.cfg.DialTimeout)
	defer cancel()
	s, err := t.h.NewStream(ctx, id, p)
	if err != nil {
		return nil, fmt.Errorf("%w: open stream to %s: %w", ErrNoRoute, id, err)
	}
	return s, nil
}

// route decides how long connecting to a peer may take: DialTimeout when
// one of its relays is up, DirectDialTimeout when only its direct
// addresses are left to try, and not at all (a *RouteError) when those
// failed recently too (within PeerTTL, the time its record takes to be
// republished with addresses that may have changed).
func (t *Tunnel) route(id peer.ID) (time.Duration, error) {
	if len(t.h.Peerstore().Addrs(id)) == 0 {
		return 0, fmt.Errorf("%w: %s has no known address", ErrNoRoute, id)
	}
	t.mu.Lock()
	rec, known := t.peers[id]
	failed := t.directFailed[id]
	var down []peer.ID
	direct := false
	for _, a := range parseAddrs(rec.Addrs) {
		if !isRelayed(a) {
			direct = true
			continue
		}
		relay, err := a.ValueForProtocol(ma.P_P2P)
		if err != nil {
			continue
		}
		rid, err := peer.Decode(relay)
		if err != nil {
			continue
		}
		if r := t.relays[rid]; r != nil && time.Now().Before(r.Expiration) &&
			t.h.Network().Connectedness(rid) == network.Connected {
			t.mu.Unlock()
			return t.cfg.DialTimeout, nil
		}
		if !slices.Contains(down, rid) {
			down = append(down, rid)
		}
	}
	t.mu.Unlock()
	if !known {
		// Not in the store (an address learnt otherwise): no knowledge of
		// its relays; let the swarm try.
		return t.cfg.DialTimeout, nil
	}
	if !direct {
		return 0, &RouteError{Peer: id, RelaysDown: down}
	}
	if !failed.IsZero() && time.Since(failed) < t.cfg.PeerTTL {
		return 0, &RouteError{Peer: id, RelaysDown: down, DirectFailed: failed}
	}
	return min(t.cfg.DirectDialTimeout, t.cfg.DialTimeout), nil
}

// Direct reports whether the connection to id is direct (not relayed).
func (t *Tunnel) Direct(id peer.ID) bool {
	for _, c := range t.h.Network().ConnsToPeer(id) {
		if _, err := c.RemoteMultiaddr().ValueForProtocol(ma.P_CIRCUIT); err != nil {
			return true
		}
	}
	return false
}
