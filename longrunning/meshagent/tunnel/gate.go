package tunnel

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/kmep-io/kmep/store"
)

// sigVersion starts every record signature.
const sigVersion = "v1"

// recordKey derives the key that signs peer records from the mesh
// secret, so that the secret itself (also pnet's key when KMEP_MESH_PNET
// is on) is never used for two things.
func recordKey(secret []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("kmep mesh peer record v1"))
	return m.Sum(nil)
}

// recordMAC is the HMAC-SHA256 of a record's fields and its expiry,
// each length-prefixed.
func recordMAC(key []byte, p store.MeshPeer, expires int64) []byte {
	m := hmac.New(sha256.New, key)
	field := func(s string) {
		m.Write(binary.AppendUvarint(nil, uint64(len(s))))
		m.Write([]byte(s))
	}
	list := func(ss []string) {
		m.Write(binary.AppendUvarint(nil, uint64(len(ss))))
		for _, s := range ss {
			field(s)
		}
	}
	field(sigVersion)
	field(p.ID)
	field(p.Node)
	field(strconv.FormatBool(p.Relay))
	list(p.Addrs)
	list(p.Networks)
	field(strconv.FormatInt(expires, 10))
	return m.Sum(nil)
}

// SignRecord sets p.Sig: "v1.<expiry, Unix ms>.<HMAC-SHA256 of the record
// under a key derived from the mesh secret>". The signature binds the
// record's peer ID, which the TLS handshake authenticates, so a copied
// record admits no one else.
func SignRecord(secret []byte, p store.MeshPeer, expires time.Time) store.MeshPeer {
	exp := expires.UnixMilli()
	p.Sig = sigVersion + "." + strconv.FormatInt(exp, 10) + "." +
		base64.RawURLEncoding.EncodeToString(recordMAC(recordKey(secret), p, exp))
	return p
}

// ErrBadRecord is returned (wrapped) by VerifyRecord for a record that is
// unsigned, signed with another secret, altered, or expired.
var ErrBadRecord = errors.New("tunnel: peer record not signed with the mesh secret")

// VerifyRecord checks p's signature under secret and that its signed
// expiry (plus skew, for clocks that differ) has not passed at now.
func VerifyRecord(secret []byte, p store.MeshPeer, now time.Time, skew time.Duration) error {
	parts := strings.Split(p.Sig, ".")
	if len(parts) != 3 || parts[0] != sigVersion {
		return ErrBadRecord
	}
	exp, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return ErrBadRecord
	}
	mac, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || !hmac.Equal(mac, recordMAC(recordKey(secret), p, exp)) {
		return ErrBadRecord
	}
	if now.After(time.UnixMilli(exp).Add(skew)) {
		return errors.Join(ErrBadRecord, errors.New("tunnel: the record's signature expired"))
	}
	return nil
}

// gate is the host's ConnectionGater: once a connection's security
// handshake has authenticated the remote peer ID, it admits the peer only
// if the store holds a record of that ID signed with the mesh secret (the
// same secret decides who is in as pnet's PSK did, without encrypting
// every byte a second time). Dials and accepts are not gated before the
// handshake: there is no peer ID to judge yet.
type gate struct {
	t *Tunnel

	// mu serialises reloads of the peer list on a miss, at most one per
	// minReload: an unknown peer is checked against the store at once (a
	// node that just published its record), but cannot make the gate read
	// Redis for every connection attempt.
	mu       sync.Mutex
	reloaded time.Time
}

// minReload is the least time between two store reads made by the gate.
const minReload = 200 * time.Millisecond

var _ connmgr.ConnectionGater = (*gate)(nil)

func (g *gate) InterceptPeerDial(peer.ID) bool                                  { return true }
func (g *gate) InterceptAddrDial(peer.ID, ma.Multiaddr) bool                    { return true }
func (g *gate) InterceptAccept(network.ConnMultiaddrs) bool                     { return true }
func (g *gate) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return true, 0 }

// InterceptSecured admits the authenticated peer p if it is a member.
func (g *gate) InterceptSecured(dir network.Direction, p peer.ID, addrs network.ConnMultiaddrs) bool {
	t := g.t
	if p == t.self || t.member(p) {
		return true
	}
	g.mu.Lock()
	if time.Since(g.reloaded) >= minReload {
		g.reloaded = time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), t.cfg.DialTimeout)
		if _, err := t.loadPeers(ctx); err != nil {
			t.log.Warn("mesh gate: cannot read the peer records", "err", err)
		}
		cancel()
	}
	g.mu.Unlock()
	if t.member(p) {
		return true
	}
	t.refused.Add(1)
	t.log.Debug("mesh gate: refused a peer without a record signed with the mesh secret", "peer", p.String(),
		"direction", dir.String(), "remote", addrs.RemoteMultiaddr().String())
	return false
}
