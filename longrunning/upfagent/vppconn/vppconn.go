// Package vppconn keeps a govpp connection to VPP's binary API: it
// connects in the background through an adapter (the socket client on
// VPP's API socket in production), reconnects on its own whenever the
// health check loses VPP, and reports every (re)connection on Reset, since
// a VPP that came back may have lost the rules it held. Failed connection
// attempts are logged (the first, then every tenth), since govpp itself
// logs them only at debug level.
package vppconn

import (
	"log/slog"
	"math"
	"sync/atomic"
	"time"

	"go.fd.io/govpp/adapter"
	"go.fd.io/govpp/core"
)

// Conn is a self-reconnecting govpp connection.
type Conn struct {
	// Conn sends requests; they fail while VPP is away.
	*core.Connection
	reset chan struct{}
	done  chan struct{}
}

// Dial starts connecting through a (socketclient.NewVppClient(path) for
// a real VPP), retrying every interval for ever. It does not wait for VPP.
func Dial(a adapter.VppAPI, interval time.Duration, log *slog.Logger) (*Conn, error) {
	conn, events, err := core.AsyncConnect(&logged{VppAPI: a, log: log}, math.MaxInt32, interval)
	if err != nil {
		return nil, err
	}
	c := &Conn{Connection: conn, reset: make(chan struct{}, 1), done: make(chan struct{})}
	go func() {
		for {
			select {
			case <-c.done:
				return
			case e := <-events:
				switch e.State {
				case core.Connected:
					log.Info("VPP API connected")
					select {
					case c.reset <- struct{}{}:
					default:
					}
				case core.Failed:
					log.Error("VPP API connection failed for good", "err", e.Error)
				default:
					log.Warn("VPP API connection lost: reconnecting", "state", e.State.String(), "err", e.Error)
				}
			}
		}
	}()
	return c, nil
}

// Reset receives a value after every (re)connection.
func (c *Conn) Reset() <-chan struct{} { return c.reset }

// Close disconnects.
func (c *Conn) Close() {
	close(c.done)
	c.Connection.Disconnect()
}

// logged logs an adapter's failed connection attempts.
type logged struct {
	adapter.VppAPI
	log      *slog.Logger
	failures atomic.Int64
}

// Connect connects the adapter and logs a failure (the first of a run of
// failures, then every tenth).
func (l *logged) Connect() error {
	err := l.VppAPI.Connect()
	if err == nil {
		l.failures.Store(0)
		return nil
	}
	if n := l.failures.Add(1); n%10 == 1 {
		l.log.Warn("VPP API not reachable: retrying", "attempts", n, "err", err)
	}
	return err
}
