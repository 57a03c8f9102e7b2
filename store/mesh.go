package store

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// MeshPeer is one mesh agent's tunnel endpoint as the store keeps it: the
// way other nodes find it without a public DHT. A record lives for the TTL
// it was put with; agents refresh theirs well before it ends.
type MeshPeer struct {
	// ID is the libp2p peer ID (derived from the node's kept identity key).
	ID string `json:"id"`
	// Node is the node name, for logs and operators.
	Node string `json:"node,omitempty"`
	// Addrs are the peer's multiaddrs (direct and relayed), without /p2p/ID.
	Addrs []string `json:"addrs"`
	// Relay is true for a designated relay node.
	Relay bool `json:"relay,omitempty"`
	// Networks are the IP prefixes ("192.168.1.0/24", "10.0.0.5/32") whose
	// service endpoints this peer reaches directly: a proxied connection to
	// an endpoint inside one of them is tunnelled to this peer.
	Networks []string `json:"networks,omitempty"`
	// Sig is the record's signature, opaque to the store (the mesh agent
	// signs its record with the mesh secret, and admits only peers whose
	// records verify).
	Sig string `json:"sig,omitempty"`
	// Expires is when the record lapses (set by the store on read).
	Expires time.Time `json:"-"`
}

func (s *Store) meshPeerKey(id string) string { return s.key("mesh", "peer", id) }
func (s *Store) meshPeersKey() string         { return s.key("mesh", "peers") }

// PutMeshPeer stores (or refreshes) a peer record for ttl. ErrInvalid for
// an empty or ':'-bearing ID or a ttl under 1 ms.
func (s *Store) PutMeshPeer(ctx context.Context, p MeshPeer, ttl time.Duration) error {
	if !keyPart(p.ID) {
		return fmt.Errorf("put mesh peer %q: id must be non-empty and contain no ':': %w", p.ID, ErrInvalid)
	}
	if ttl < time.Millisecond {
		return fmt.Errorf("put mesh peer %s: ttl %s: %w", p.ID, ttl, ErrInvalid)
	}
	b, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("put mesh peer %s: %w", p.ID, err)
	}
	exp := s.now().Add(ttl).UnixMilli()
	_, err = s.rdb.TxPipelined(ctx, func(tx redis.Pipeliner) error {
		tx.Set(ctx, s.meshPeerKey(p.ID), b, ttl)
		tx.ZAdd(ctx, s.meshPeersKey(), redis.Z{Score: float64(exp), Member: p.ID})
		return nil
	})
	return wrap("put mesh peer "+p.ID, err)
}

// MeshPeers lists the peer records that have not lapsed, ordered by ID.
// Lapsed index entries are dropped on the way.
func (s *Store) MeshPeers(ctx context.Context) ([]MeshPeer, error) {
	now := strconv.FormatInt(s.now().UnixMilli(), 10)
	zs, err := s.rdb.ZRangeByScoreWithScores(ctx, s.meshPeersKey(), &redis.ZRangeBy{Min: "(" + now, Max: "+inf"}).Result()
	if err != nil {
		return nil, wrap("list mesh peers", err)
	}
	if err := s.rdb.ZRemRangeByScore(ctx, s.meshPeersKey(), "-inf", now).Err(); err != nil {
		return nil, wrap("trim mesh peers", err)
	}
	if len(zs) == 0 {
		return nil, nil
	}
	keys := make([]string, len(zs))
	for i, z := range zs {
		keys[i] = s.meshPeerKey(str(z.Member))
	}
	vals, err := s.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, wrap("load mesh peers", err)
	}
	out := make([]MeshPeer, 0, len(vals))
	for i, v := range vals {
		raw, ok := v.(string)
		if !ok {
			continue // lapsed between the two reads
		}
		var p MeshPeer
		if err := json.Unmarshal([]byte(raw), &p); err != nil {
			return nil, fmt.Errorf("load mesh peer %s: %w", str(zs[i].Member), err)
		}
		p.Expires = time.UnixMilli(int64(zs[i].Score))
		out = append(out, p)
	}
	sortPeers(out)
	return out, nil
}

func sortPeers(p []MeshPeer) {
	sort.Slice(p, func(i, j int) bool { return p[i].ID < p[j].ID })
}

// DeleteMeshPeer removes a peer record (an agent leaving cleanly). Deleting
// a record that does not exist is not an error.
func (s *Store) DeleteMeshPeer(ctx context.Context, id string) error {
	if !keyPart(id) {
		return fmt.Errorf("delete mesh peer %q: %w", id, ErrInvalid)
	}
	_, err := s.rdb.TxPipelined(ctx, func(tx redis.Pipeliner) error {
		tx.Del(ctx, s.meshPeerKey(id))
		tx.ZRem(ctx, s.meshPeersKey(), id)
		return nil
	})
	return wrap("delete mesh peer "+id, err)
}
