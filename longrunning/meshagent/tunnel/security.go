package tunnel

import (
	"context"
	"net"
	"sync"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/core/sec"
	libp2pyamux "github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	tptu "github.com/libp2p/go-libp2p/p2p/net/upgrader"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
)

// maxFrame is the largest yamux data frame this node sends (yamux's
// default is 64 KiB). A proxied connection's 256 KiB read goes out as one
// frame, so as one batched write of its TLS records (see batchedTLS). It
// changes nothing on the wire that a peer must agree to: a receiver takes
// any frame that fits the stream's window.
const maxFrame = 1 << 20

// maxBatch bounds the TLS records a batchConn holds before it writes them
// (a frame of maxFrame is then four writes, not 64).
const maxBatch = 256 << 10

// muxer is libp2p's yamux with frames of up to maxFrame.
func muxer() *libp2pyamux.Transport {
	cfg := *libp2pyamux.DefaultTransport.Config()
	cfg.MaxMessageSize = maxFrame
	return (*libp2pyamux.Transport)(&cfg)
}

// batchedTLS is libp2p's TLS 1.3 security transport, with the records
// of one write batched into as few writes to the connection as maxBatch
// allows. crypto/tls writes each record (at most 16 KiB of data) with a
// write(2) of its own and offers no way to gather them; on a TCP
// connection with Nagle off, every one is pushed as a segment of its own
// through the path (veths, NATs, qdiscs) and woken up for at the far end.
// The records, their encryption and the handshake are crypto/tls's,
// unchanged: peers see the same bytes as from libp2ptls.
type batchedTLS struct{ *libp2ptls.Transport }

var _ sec.SecureTransport = (*batchedTLS)(nil)

// newBatchedTLS has the signature libp2p.Security takes (libp2ptls.New's).
func newBatchedTLS(id protocol.ID, key crypto.PrivKey, muxers []tptu.StreamMuxer) (*batchedTLS, error) {
	t, err := libp2ptls.New(id, key, muxers)
	if err != nil {
		return nil, err
	}
	return &batchedTLS{t}, nil
}

// SecureInbound runs the TLS handshake as a server.
func (t *batchedTLS) SecureInbound(ctx context.Context, insecure net.Conn, p peer.ID) (sec.SecureConn, error) {
	raw := &batchConn{Conn: insecure}
	sc, err := t.Transport.SecureInbound(ctx, raw, p)
	if err != nil {
		return nil, err
	}
	return &batchedConn{SecureConn: sc, raw: raw}, nil
}

// SecureOutbound runs the TLS handshake as a client.
func (t *batchedTLS) SecureOutbound(ctx context.Context, insecure net.Conn, p peer.ID) (sec.SecureConn, error) {
	raw := &batchConn{Conn: insecure}
	sc, err := t.Transport.SecureOutbound(ctx, raw, p)
	if err != nil {
		return nil, err
	}
	return &batchedConn{SecureConn: sc, raw: raw}, nil
}

// batchedConn is a TLS connection whose Write hands the records it makes
// to the connection below in batches, all of them before it returns.
type batchedConn struct {
	sec.SecureConn
	raw *batchConn
	mu  sync.Mutex // one Write at a time (crypto/tls serializes them too)
}

func (c *batchedConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.raw.hold()
	n, err := c.SecureConn.Write(p)
	if ferr := c.raw.flush(); err == nil && ferr != nil {
		return 0, ferr
	}
	return n, err
}

// batchConn is the connection under TLS. Between hold and flush it keeps
// what TLS writes (up to maxBatch, then writes that out); otherwise, as
// during the handshake, a write goes through at once. Anything TLS writes
// meanwhile from another goroutine (a key update answered by a read) is
// kept in order with the rest and flushed by the same flush.
type batchConn struct {
	net.Conn

	mu      sync.Mutex
	holding bool
	buf     []byte
	err     error // the first failed write; every later one fails with it
}

func (c *batchConn) hold() {
	c.mu.Lock()
	c.holding = true
	c.mu.Unlock()
}

func (c *batchConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if !c.holding {
		n, err := c.Conn.Write(p)
		c.err = err
		return n, err
	}
	if len(c.buf)+len(p) > maxBatch && len(c.buf) > 0 {
		if err := c.writeOut(); err != nil {
			return 0, err
		}
	}
	c.buf = append(c.buf, p...)
	return len(p), nil
}

// flush writes out what is kept and stops holding.
func (c *batchConn) flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.holding = false
	if c.err != nil {
		return c.err
	}
	return c.writeOut()
}

// writeOut writes the kept bytes; c.mu is held.
func (c *batchConn) writeOut() error {
	if len(c.buf) == 0 {
		return nil
	}
	_, c.err = c.Conn.Write(c.buf)
	c.buf = c.buf[:0]
	return c.err
}
